"""What crosses a relay channel, and the record that says how a site's relay is reached.

A relay stream is one TLS connection between two gateways (docs/relay.md).
The connecting gateway sends one `StreamRequest` line, the exporting gateway
answers one reply line, then both splice bytes.  Lines are strict, bounded
JSON: they come from other members, who may be wrong or hostile.

The exporting side's rule (`exported_target`): a stream may reach only a
service this gateway exports now, by type, instance and the port it put into
the DHT; never an address or port the asker picks.

A `RelayRecord` is put (sealed and signed like every value in a private
network) under the key of the pseudo type `RELAY_RECORD_TYPE`: the site's relay
endpoint (``host:port``, "" if it has none) and whether its addresses are
reachable from other sites.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from z2z.core.errors import Z2zError
from z2z.core.records import RecordError, Service, normalize_type
from z2z.core.wire.envelope import valid_site

VERSION = 1
MAX_LINE = 1024  # bytes of a request or reply line, newline included
MAX_RECORD_BYTES = 1024
MAX_INSTANCE = 255
RELAY_RECORD_TYPE = "_z2z-relay._tcp"  # a pseudo type: its DHT key holds the relay records
_ENDPOINT = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})$")
_REQUEST_FIELDS = {"relay", "op", "site", "type", "instance", "port"}
_RECORD_FIELDS = {"z2z", "relay", "net", "site", "ts", "ttl", "endpoint", "reachable"}
OPS = ("connect", "ping")


class RelayError(Z2zError, ValueError):
    """A request, reply or record z2z refuses; `reason` is a short counter name."""

    default_reason = "bad-relay-request"


def valid_endpoint(endpoint: str) -> bool:
    m = _ENDPOINT.match(endpoint)
    return m is not None and 0 < int(m.group(1)) < 65536


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); RelayError if it is not one."""
    if not valid_endpoint(endpoint):
        raise RelayError(f"not HOST:PORT: {endpoint[:80]!r}")
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Carry this stream to `instance` of `type` at `site`, on `port` (or just answer: op ping)."""

    op: str
    site: str
    type: str = ""
    instance: str = ""
    port: int = 0


def _line(doc: dict[str, object]) -> bytes:
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise RelayError("too-large")
    return data


def encode_request(req: StreamRequest) -> bytes:
    return _line(
        {
            "relay": VERSION,
            "op": req.op,
            "site": req.site,
            "type": req.type,
            "instance": req.instance,
            "port": req.port,
        }
    )


def _json(line: bytes) -> dict[str, object]:
    if len(line) > MAX_LINE:
        raise RelayError("too-large")
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RelayError("not JSON") from None
    if not isinstance(doc, dict):
        raise RelayError("not a JSON object")
    return doc


def decode_request(line: bytes) -> StreamRequest:
    """Strict: exactly the known fields, a valid site, type, instance and port."""
    doc = _json(line)
    if set(doc) != _REQUEST_FIELDS or doc["relay"] != VERSION or doc["op"] not in OPS:
        raise RelayError("not a z2z relay request")
    site, stype, instance, port = doc["site"], doc["type"], doc["instance"], doc["port"]
    if not isinstance(site, str) or not valid_site(site):
        raise RelayError("bad site")
    if doc["op"] == "ping":
        return StreamRequest("ping", site)
    if not isinstance(instance, str) or not 0 < len(instance.encode()) <= MAX_INSTANCE:
        raise RelayError("bad instance")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RelayError("bad port")
    if not isinstance(stype, str):
        raise RelayError("bad type")
    try:
        service_type = normalize_type(stype)
    except RecordError as exc:
        raise RelayError(str(exc)) from None
    return StreamRequest("connect", site, service_type, instance, port)


def encode_reply(error: str | None) -> bytes:
    """``{"ok":true}`` or ``{"ok":false,"error":REASON}``."""
    return _line({"ok": True} if error is None else {"ok": False, "error": error[:100]})


def decode_reply(line: bytes) -> str | None:
    """None when the stream was accepted, else the reason the exporting gateway gave."""
    doc = _json(line)
    ok = doc.get("ok")
    if ok is True and set(doc) == {"ok"}:
        return None
    error = doc.get("error")
    if ok is False and set(doc) == {"ok", "error"} and isinstance(error, str):
        return error[:100]
    raise RelayError("not a z2z relay reply")


def exported_target(req: StreamRequest, site: str, exports: Iterable[Service]) -> Service | str:
    """The exported service `req` may reach, else the refusal reason.

    Only a service this gateway exports now, named by type and instance, on
    the very port it put into the DHT: a relay is never an open proxy.
    """
    if req.op != "connect":
        return "bad-op"
    if req.site != site:
        return "wrong-site"
    for svc in exports:
        if svc.type == req.type and svc.instance == req.instance:
            if svc.port != req.port:
                return "not-exported"
            if not svc.addresses:
                return "no-address"
            return svc
    return "not-exported"


@dataclass(frozen=True, slots=True)
class RelayRecord:
    """How a site's relay is reached: `endpoint` ("" = none) and whether its addresses are reachable."""

    network: str
    site: str
    ts: float
    ttl: int
    endpoint: str
    reachable: bool

    def expires(self) -> float:
        return self.ts + self.ttl


def encode_record(rec: RelayRecord) -> bytes:
    doc = {
        "z2z": 1,
        "relay": VERSION,
        "net": rec.network,
        "site": rec.site,
        "ts": round(rec.ts, 3),
        "ttl": rec.ttl,
        "endpoint": rec.endpoint,
        "reachable": rec.reachable,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_record(data: bytes) -> RelayRecord:
    if len(data) > MAX_RECORD_BYTES:
        raise RelayError("too-large")
    doc = _json(data)
    if set(doc) != _RECORD_FIELDS or doc["z2z"] != 1 or doc["relay"] != VERSION:
        raise RelayError("not a z2z relay record")
    net, site, ts, ttl = doc["net"], doc["site"], doc["ts"], doc["ttl"]
    endpoint, reachable = doc["endpoint"], doc["reachable"]
    if not (isinstance(net, str) and isinstance(site, str) and valid_site(site)):
        raise RelayError("bad network or site")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not ts > 0:
        raise RelayError("bad ts")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= 86400:
        raise RelayError("bad ttl")
    if not isinstance(endpoint, str) or (endpoint and not valid_endpoint(endpoint)):
        raise RelayError("bad endpoint")
    if not isinstance(reachable, bool):
        raise RelayError("bad reachable")
    return RelayRecord(net, site, float(ts), ttl, endpoint, reachable)
