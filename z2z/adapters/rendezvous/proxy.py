"""The OpenDHT REST proxy (``dhtnode --proxyserver PORT``) spoken over httpx.

What the proxy (OpenDHT 2.4, Debian ``dhtnode``) does, and why the code looks so:

- ``GET /`` answers node info JSON (``node_id``, ``ipv4.good``, ``ipv6.good``...).
- ``POST /key/<hex>`` takes ``{"data": base64, "id": "<decimal u64>", "type": 0}``
  and answers 200 with the stored value once the DHT put is done; a node without
  peers answers 502 ``{"err":"Put failed"}`` but keeps the value.
- ``GET /key/<hex>`` streams newline-delimited JSON values, then ends.
- ``GET /key/<hex>/listen`` is an endless stream of the same lines (stored values
  first, then new ones; ``"expired": true`` when one expires).  The proxy sends
  *nothing*, not even the response headers, until the first value exists, and
  never sends keep-alives: a silent listen is normal, so it has no read timeout
  (TCP keep-alive notices a dead peer instead).

Everything read from the proxy is untrusted: lines are bounded, parsed
defensively and counted in `ProxyRendezvous.stats` when refused; a put counts
only when the proxy echoes the value it stored; each way the proxy fails is
logged once (`ConditionLog`), however often it happens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

from z2z.adapters.rendezvous.base import (
    MAX_VALUE_ID,
    AnswerTooBig,
    ConditionLog,
    DhtValue,
    ListenCallback,
    PutNotConfirmed,
    RendezvousError,
    check_key,
    check_value_id,
)

log = logging.getLogger(__name__)

# A z2z value is < 1 KiB; OpenDHT's own limit is 64 KiB of data.  Longer lines are junk.
DEFAULT_MAX_LINE = 64 * 1024
# Bodies we only read for an error message or node info.
_SMALL_BODY = 16 * 1024
# What `parse_value_line` and `iter_lines` count when they refuse a line.
JUNK_REASONS = frozenset({"bad_json", "bad_field", "bad_id", "bad_base64", "oversize_line", "truncated_line"})
# Values a listen connection remembers having delivered, to skip a proxy repeating itself.
LISTEN_DEDUP_MAX = 1024
# A listen connection delivering more distinct values than this per minute is cut (a flood).
LISTEN_FLOOD_PER_MINUTE = 4096


def _keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keep-alive so a listen on a silent key still notices a vanished proxy (~60 s)."""
    opts = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return opts


def parse_value_line(line: bytes, stats: Counter[str]) -> tuple[DhtValue, bool] | None:
    """One proxy JSON line → (value, expired), or None (counted in `stats`) if unfit.

    The proxy is outside our trust boundary: anything but the exact expected
    shape is skipped, never raised, so one bad value cannot stop a stream.
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…"
        stats["bad_json"] += 1
        return None
    if not isinstance(obj, dict):
        stats["bad_json"] += 1
        return None
    data, vid, expired = obj.get("data"), obj.get("id"), obj.get("expired", False)
    if not isinstance(data, str) or not isinstance(expired, bool):
        stats["bad_field"] += 1
        return None
    # The proxy writes ids as decimal strings (JSON numbers lose precision past 2**53).
    if isinstance(vid, str) and vid.isascii() and vid.isdigit() and len(vid) <= 20:
        value_id = int(vid)
    elif isinstance(vid, int) and not isinstance(vid, bool):
        value_id = vid
    else:
        stats["bad_id"] += 1
        return None
    if not 0 <= value_id <= MAX_VALUE_ID:
        stats["bad_id"] += 1
        return None
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        stats["bad_base64"] += 1
        return None
    return DhtValue(value_id, payload), expired


async def iter_lines(
    chunks: AsyncIterator[bytes], max_line: int, stats: Counter[str]
) -> AsyncIterator[bytes]:
    """Split a byte stream into non-empty lines, never holding more than `max_line` bytes.

    A line longer than `max_line` is dropped (counted once as ``oversize_line``)
    up to its newline, so an endless line costs bounded memory, not a crash.
    """
    buf = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not skipping:
                    buf += chunk[start:]
                    if len(buf) > max_line:
                        stats["oversize_line"] += 1
                        buf.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
            else:
                buf += chunk[start:nl]
                if len(buf) > max_line:
                    stats["oversize_line"] += 1
                elif buf.strip():
                    yield bytes(buf)
                buf.clear()
            start = nl + 1
    if buf.strip() and not skipping:
        # No final newline: a truncated line (the proxy always ends lines).
        stats["truncated_line"] += 1


async def _read_bounded(response: httpx.Response, limit: int = _SMALL_BODY) -> bytes:
    """At most `limit` bytes of a streamed body (for errors and node info)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def condition_of(exc: BaseException) -> str:
    """A short, stable label of a transport failure (see `RendezvousError.condition`)."""
    if isinstance(exc, RendezvousError):
        return exc.condition
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return (
            "truncated answer" if "incomplete" in str(exc) or "closed connection" in str(exc) else "not HTTP"
        )
    if isinstance(exc, httpx.ReadError | httpx.WriteError | ConnectionResetError):
        return "connection reset"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    return "network error"


class ProxyRendezvous:
    """A `Rendezvous` backed by an OpenDHT REST proxy.

    `timeout` bounds every request (connect, each read, the whole of a put);
    `get_deadline` bounds a whole `get`, and `max_values` / `max_get_bytes` its
    size, because a broken or lying proxy may stream forever.  Listens reconnect
    with exponential backoff (`backoff_initial` doubling up to `backoff_cap`, with
    jitter).  `permanent=True` asks the proxy to keep re-putting values itself
    (24 h); z2z normally refreshes on its own clock instead.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        get_deadline: float | None = None,
        max_values: int = 4096,
        max_get_bytes: int = 8 * 1024 * 1024,
        max_line: int = DEFAULT_MAX_LINE,
        backoff_initial: float = 0.25,
        backoff_cap: float = 5.0,
        permanent: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"bad OpenDHT proxy URL {base_url!r}: {exc}") from None
        if (
            url.scheme not in ("http", "https")
            or not url.host
            or url.query
            or url.fragment
            or not 0 < (url.port or 80) < 65536
        ):
            raise ValueError(f"not an OpenDHT proxy URL: {base_url!r} (expected http://host:port)")
        self.base_url = str(url).rstrip("/")
        self.timeout = timeout
        self.get_deadline = get_deadline if get_deadline is not None else 3 * timeout
        self.max_values = max_values
        self.max_get_bytes = max_get_bytes
        self.max_line = max_line
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.permanent = permanent
        #: Refused input and reconnects, by reason (``bad_json``, ``oversize_line``...).
        self.stats: Counter[str] = Counter()
        #: Failures by condition, each logged once (``timeout``, ``HTTP 500``, ``junk values``...).
        self.trouble = ConditionLog(log, f"OpenDHT proxy {self.base_url}")
        # Raised with the quotas by the gateway (z2z.app.bridging.value_cap).
        self.listen_flood_per_minute = LISTEN_FLOOD_PER_MINUTE
        self._listens: set[_ProxyListen] = set()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            # Each listen holds one connection for as long as it lives.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=16),
            transport=transport or httpx.AsyncHTTPTransport(socket_options=_keepalive_options(), retries=0),
            # Raw bytes only: no decompression bomb from a lying proxy; lines are bounded.
            headers={"Accept": "application/json", "Accept-Encoding": "identity"},
        )

    def __repr__(self) -> str:
        return f"ProxyRendezvous({self.base_url!r})"

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Check that the proxy answers ``GET /`` with node info."""
        await self._node_json()

    async def close(self) -> None:
        handles = list(self._listens)
        for handle in handles:
            handle.cancel()
        tasks = [h.task for h in handles if h.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    # -- operations ------------------------------------------------------------
    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        path = f"/key/{check_key(key)}"
        body: dict[str, Any] = {
            "data": base64.b64encode(data).decode("ascii"),
            "id": str(check_value_id(value_id)),
            "type": 0,
        }
        if self.permanent:
            body["permanent"] = True
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", path, json=body) as response:
                    reply = await _read_bounded(response)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise self._failed("put", f"put to {self.base_url}: {_describe(exc)}", condition_of(exc)) from exc
        text = reply.decode("utf-8", "replace")[:200]
        if response.status_code == 200:
            # The proxy answers with the value it stored: anything else is not a put.
            echo = parse_value_line(reply.strip(), Counter())
            if echo is None or echo[0] != DhtValue(value_id, data):
                raise self._failed(
                    "put",
                    f"put to {self.base_url}: HTTP 200 without the stored value ({text[:80]!r})",
                    "put not echoed",
                )
            self.trouble.worked("put")
            return
        if response.status_code == 502:
            self.trouble.worked("put")  # the proxy is fine; its node has no peers (yet)
            raise PutNotConfirmed(
                f"put to {self.base_url}: no DHT peer confirmed it (HTTP 502 {text}); "
                "the proxy's own node keeps the value"
            )
        raise self._failed(
            "put",
            f"put to {self.base_url}: HTTP {response.status_code} {text}",
            f"HTTP {response.status_code}",
        )

    def _failed(self, op: str, message: str, condition: str) -> RendezvousError:
        """Count and log (once per condition) a failed operation; the error to raise."""
        self.trouble.failed(op, condition, message)
        return RendezvousError(message, condition)

    def _junk(self, op: str) -> None:
        """A value line was refused (counted in `stats` by its reason): log the first."""
        junk = {k: v for k, v in self.stats.items() if k in JUNK_REASONS}
        self.trouble.failed(
            op, "junk values", ", ".join(f"{k} {v}" for k, v in sorted(junk.items())), transient=False
        )

    async def get(self, key: bytes) -> list[DhtValue]:
        """All values under `key`, de-duplicated; partial answers raise.

        A get cut short (deadline, too many values or bytes, broken stream) raises
        RendezvousError rather than returning a partial list, because callers use
        `get` for anti-entropy and would take a missing value for a withdrawn one.
        """
        path = f"/key/{check_key(key)}"
        values: dict[tuple[int, bytes], DhtValue] = {}
        received = 0
        truncated = self.stats["truncated_line"]
        try:
            async with asyncio.timeout(self.get_deadline):
                async with self._client.stream("GET", path) as response:
                    if response.status_code != 200:
                        reply = await _read_bounded(response, 200)
                        raise self._failed(
                            "get",
                            f"get from {self.base_url}: HTTP {response.status_code} "
                            f"{reply.decode('utf-8', 'replace')}",
                            f"HTTP {response.status_code}",
                        )
                    async for line in iter_lines(response.aiter_raw(), self.max_line, self.stats):
                        received += len(line)
                        parsed = parse_value_line(line, self.stats)
                        if parsed is None:
                            self._junk("get")
                            continue
                        value, expired = parsed
                        if not expired:
                            values.setdefault((value.id, value.data), value)
                        if len(values) > self.max_values or received > self.max_get_bytes:
                            # The proxy works; the answer is too big.  Not an outage: the
                            # caller logs it as its own condition and may use what was read.
                            self.stats["get_too_big"] += 1
                            self.trouble.worked("get")
                            raise AnswerTooBig(
                                f"get from {self.base_url}: more than {self.max_values} values "
                                f"or {self.max_get_bytes} bytes under one key; stopped reading",
                                list(values.values())[: self.max_values],
                            )
        except AnswerTooBig:
            raise
        except TimeoutError as exc:
            self.stats["get_deadline"] += 1
            raise self._failed(
                "get", f"get from {self.base_url}: not finished after {self.get_deadline:g} s", "get deadline"
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise self._failed(
                "get", f"get from {self.base_url}: {_describe(exc)}", condition_of(exc)
            ) from exc
        if self.stats["truncated_line"] != truncated:  # the stream ended inside a line: partial
            raise self._failed(
                "get", f"get from {self.base_url}: the answer ends inside a line", "truncated answer"
            )
        self.trouble.worked("get")
        return list(values.values())

    def listen(self, key: bytes, callback: ListenCallback) -> _ProxyListen:
        """Start a background stream on `key`; must be called from the running loop."""
        handle = _ProxyListen(self, check_key(key), callback)
        self._listens.add(handle)
        handle.task = asyncio.get_running_loop().create_task(
            handle.run(), name=f"z2z-listen-{handle.hex_key[:8]}"
        )
        return handle

    async def node_info(self) -> dict[str, Any]:
        info = await self._node_json()
        peers = 0
        for family in ("ipv4", "ipv6"):
            fam = info.get(family)
            good = fam.get("good") if isinstance(fam, dict) else None
            if isinstance(good, int) and not isinstance(good, bool) and good > 0:
                peers += good
        return {
            "backend": "proxy",
            "url": self.base_url,
            "node_id": str(info.get("node_id", "")),
            "peers": peers,
            "public_ip": info.get("public_ip"),
            "listens": len(self._listens),
            "listens_streaming": sum(1 for h in self._listens if h.connected),
            "stats": dict(self.stats),
        }

    async def _node_json(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", "/") as response:
                    body = await _read_bounded(response)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise self._failed(
                "node info", f"OpenDHT proxy {self.base_url} unreachable: {_describe(exc)}", condition_of(exc)
            ) from exc
        if response.status_code != 200:
            raise self._failed(
                "node info",
                f"OpenDHT proxy {self.base_url} answered HTTP {response.status_code} to GET /",
                f"HTTP {response.status_code}",
            )
        try:
            info = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("node_id"), str):
            raise self._failed(
                "node info",
                f"{self.base_url} does not look like an OpenDHT proxy (no node_id in GET /)",
                "not an OpenDHT proxy",
            )
        self.trouble.worked("node info")
        return info


class _ProxyListen:
    """One key's listen stream, kept alive by a background task until cancelled.

    Per connection, a value already delivered is not delivered again (a stream
    that repeats itself costs nothing downstream), and a connection delivering
    more than `LISTEN_FLOOD_PER_MINUTE` distinct values a minute is cut and
    retried with backoff, like any other failure.
    """

    def __init__(self, owner: ProxyRendezvous, hex_key: str, callback: ListenCallback) -> None:
        self.owner = owner
        self.hex_key = hex_key
        self.callback = callback
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self.connected = False  # True once the proxy sent response headers
        # The current connection delivered a value or stayed open `backoff_cap` s.  Only
        # then does the backoff start afresh: answering 200 and hanging up is no success.
        self.proven = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()
        self.owner._listens.discard(self)

    async def run(self) -> None:
        owner = self.owner
        delay = owner.backoff_initial
        path = f"/key/{self.hex_key}/listen"
        # No read timeout: the proxy is silent (no headers either) until a value exists.
        timeout = httpx.Timeout(owner.timeout, read=None)
        while not self.cancelled:
            self.proven = False
            try:
                async with owner._client.stream("GET", path, timeout=timeout) as response:
                    if response.status_code != 200:
                        raise RendezvousError(f"HTTP {response.status_code}", f"HTTP {response.status_code}")
                    self.connected = True
                    # An answered listen that stays open a while works, even on a silent key.
                    timer = asyncio.get_running_loop().call_later(owner.backoff_cap, self._proven)
                    try:
                        await self._stream(response)
                    finally:
                        timer.cancel()
                if self.proven:
                    # A stream that worked and then ended is routine (a proxy restart, an
                    # idle connection closed): reconnect quietly, it is not a failure.
                    log.debug("listen on %s: the proxy closed the stream; reconnecting", self.hex_key[:12])
                    owner.stats["listen_reconnects"] += 1
                    self.connected = False
                    await asyncio.sleep(owner.backoff_initial * random.uniform(0.5, 1.0))
                    delay = owner.backoff_initial
                    continue
                condition, detail = "stream ended", "the proxy closed the listen before it worked"
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, OSError, RendezvousError) as exc:
                condition, detail = condition_of(exc), _describe(exc)
            except Exception as exc:  # never let a listener die silently
                log.exception("listen on %s: unexpected error", self.hex_key)
                condition, detail = type(exc).__name__, _describe(exc)
            self.connected = False
            if self.cancelled:
                return
            if self.proven:  # it worked before failing: start the backoff afresh
                self.proven, delay = False, owner.backoff_initial
            owner.stats["listen_reconnects"] += 1
            owner.trouble.failed("listen", condition, f"key {self.hex_key[:12]}…: {detail}")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, owner.backoff_cap)

    async def _stream(self, response: httpx.Response) -> None:
        owner = self.owner
        # What this connection delivered, by digest: a few dozen bytes per value, not the value.
        seen: set[tuple[int, bytes, bool]] = set()
        window, delivered = time.monotonic(), 0
        async for line in iter_lines(response.aiter_raw(), owner.max_line, owner.stats):
            parsed = parse_value_line(line, owner.stats)
            if parsed is None:
                owner._junk("listen")
                continue
            value, expired = parsed
            mark = (value.id, hashlib.blake2b(value.data, digest_size=16).digest(), expired)
            if mark in seen:
                owner.stats["repeated_value"] += 1
                continue
            if len(seen) >= LISTEN_DEDUP_MAX:
                seen.clear()  # a repeat after this is delivered again: harmless, importers drop old seqs
            seen.add(mark)
            now = time.monotonic()
            if now - window > 60.0:
                window, delivered = now, 0
            delivered += 1
            if delivered > owner.listen_flood_per_minute:
                owner.stats["listen_flood"] += 1
                raise RendezvousError(
                    f"more than {owner.listen_flood_per_minute} values in a minute", "listen flood"
                )
            if not self.proven:
                self._proven()  # a well-formed value: the stream works
            if not self.cancelled:
                self._deliver(value, expired)

    def _proven(self) -> None:
        self.proven = True
        self.owner.trouble.worked("listen")

    def _deliver(self, value: DhtValue, expired: bool) -> None:
        """Run the callback on the loop; a failing callback must not kill the stream."""
        try:
            self.callback(value, expired)
        except Exception:
            log.exception("listen callback for %s failed", self.hex_key[:12])
            self.owner.stats["callback_errors"] += 1
