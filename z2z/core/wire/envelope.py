"""The z2z DHT protocol: keys, value ids and the versioned value envelope.

Specified in docs/protocol.md.  Everything here is pure: bytes in, bytes out, and a
`ProtocolError` for anything that is not exactly what the specification allows.
Decoding is strict and bounded because values come from strangers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from z2z.core.errors import Z2zError
from z2z.core.records import RecordError, Service, decode_service, encode_service, normalize_type

# Version 2 adds subtype PTRs (``<sub>._sub.<type>``) to the DNS message.  A value
# without subtypes is still written (and only accepted) as version 1, so gateways
# that only read version 1 keep importing everything but services with subtypes.
FORMAT_VERSION = 2
VERSIONS = (1, 2)
# Classic OpenDHT capped values at 1 KiB, modern OpenDHT at 64 KiB; we refuse
# anything above this before parsing it.
MAX_VALUE_BYTES = 8192
MAX_TTL = 24 * 3600
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NODE = re.compile(r"^[0-9a-f]{16}$")
_FIELDS = {"z2z", "net", "site", "node", "seq", "ts", "ttl", "gone", "type", "dns", "sig"}


class ProtocolError(Z2zError, ValueError):
    """A DHT value that is not a valid z2z envelope; `reason` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, reason)


def valid_site(site: str) -> bool:
    return bool(_SITE.match(site))


def type_key(network: str, service_type: str) -> bytes:
    """The 20-byte DHT key (an OpenDHT InfoHash) under which a type's services live."""
    return hashlib.sha1(f"z2z/{network}/type/{service_type}".encode()).digest()


def value_id(site: str, service_type: str, instance: str, seq: int) -> int:
    """A 64-bit OpenDHT value id, new for every version.

    OpenDHT's default value type refuses to *edit* a stored value (same id, other
    data) on remote nodes, so each version of an instance gets a fresh id and the
    importer keeps the highest sequence number.  Never 0 (OpenDHT's invalid id).
    """
    digest = hashlib.sha1(f"{site}\0{service_type}\0{instance}\0{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """One z2z DHT value: a service (or its tombstone) and where it comes from.

    `ts` is the origin's wall clock when the version was issued and `ttl` how long
    importers may keep it without hearing a newer version.  `gone` marks a
    tombstone, whose `service` still names the instance.
    """

    network: str
    site: str
    node: str
    seq: int
    ts: float
    ttl: int
    gone: bool
    service: Service
    sig: str | None = None

    def expires(self) -> float:
        return self.ts + self.ttl


def encode(env: Envelope) -> bytes:
    """Serialise an envelope: compact UTF-8 JSON with the records as DNS wire in base64."""
    doc = {
        "z2z": FORMAT_VERSION if env.service.subtypes else 1,
        "net": env.network,
        "site": env.site,
        "node": env.node,
        "seq": env.seq,
        "ts": round(env.ts, 3),
        "ttl": env.ttl,
        "gone": env.gone,
        "type": env.service.type,
        "dns": base64.b64encode(encode_service(env.service)).decode("ascii"),
    }
    if env.sig is not None:
        doc["sig"] = env.sig
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(data) > MAX_VALUE_BYTES:
        raise ProtocolError("too-large", f"{len(data)} bytes")
    return data


def _field(doc: dict[str, object], name: str, kind: type | tuple[type, ...]) -> object:
    value = doc.get(name)
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError("bad-field", name)
    if not isinstance(value, kind):
        raise ProtocolError("bad-field", name)
    return value


def decode(data: bytes) -> Envelope:
    """Parse a DHT value into an Envelope, or raise ProtocolError saying why not."""
    if len(data) > MAX_VALUE_BYTES:
        raise ProtocolError("too-large", f"{len(data)} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError("not-json") from None
    if not isinstance(doc, dict):
        raise ProtocolError("not-json", "not an object")
    version = doc.get("z2z")
    if isinstance(version, bool) or version not in VERSIONS:
        raise ProtocolError("bad-version", repr(version)[:20])
    unknown = set(doc) - _FIELDS
    if unknown:
        raise ProtocolError("bad-field", ",".join(sorted(unknown))[:60])
    network = str(_field(doc, "net", str))
    site = str(_field(doc, "site", str))
    node = str(_field(doc, "node", str))
    seq = int(_field(doc, "seq", int))  # type: ignore[call-overload]
    ts = float(_field(doc, "ts", (int, float)))  # type: ignore[arg-type]
    ttl = int(_field(doc, "ttl", int))  # type: ignore[call-overload]
    gone = bool(_field(doc, "gone", bool))
    raw_type = str(_field(doc, "type", str))
    dns = str(_field(doc, "dns", str))
    sig = doc.get("sig")
    if sig is not None and not isinstance(sig, str):
        raise ProtocolError("bad-field", "sig")
    if not valid_site(site):
        raise ProtocolError("bad-site", site[:64])
    if not _NODE.match(node):
        raise ProtocolError("bad-field", "node")
    if not 0 <= seq < 2**63 or not 0 < ttl <= MAX_TTL or not ts > 0:
        raise ProtocolError("bad-field", "seq/ts/ttl out of range")
    try:
        wire = base64.b64decode(dns, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters (found by fuzzing)
        raise ProtocolError("bad-dns", "base64") from None
    try:
        service_type = normalize_type(raw_type)
        service = decode_service(wire, service_type)
    except RecordError as exc:
        raise ProtocolError("bad-dns", str(exc)) from None
    if version != (2 if service.subtypes else 1):
        # One encoding per value: version 2 exactly when there are subtypes.
        raise ProtocolError("bad-version", f"version {version} with {len(service.subtypes)} subtypes")
    return Envelope(network, site, node, seq, ts, ttl, gone, service, sig)
