"""Relay channels between gateways: TLS 1.3 over TCP, mutually authenticated, one connection per stream.

Why TLS over TCP with the stdlib `ssl` (docs/relay.md has the comparison):
OpenSSL does the crypto and certificate checks, TCP gives every relayed
stream its own flow control (backpressure without a hand-made multiplexer),
and throughput is the kernel's.  Both sides require a certificate chained to
the network's relay CA (z2z.adapters.relay.pki): only members connect; the
`authorize` callback then checks the peer's site key against the trusted one.

`RelayServer` is the exporting side: it reads one request line, asks
`target` (the export rule) where it may go, connects there and splices.
`RelayConnector` is the importing side: for each client accepted on a relayed
proxy's port it opens a channel to the exporting site and splices.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from z2z.adapters.relay.pki import peer_identity
from z2z.adapters.relay.splice import splice
from z2z.core.records import Service
from z2z.core.relay.pool import SparePolicy
from z2z.core.relay.protocol import (
    RelayError,
    StreamRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    split_endpoint,
)

log = logging.getLogger(__name__)

Channel = tuple[asyncio.StreamReader, asyncio.StreamWriter]
REFILL_LATEST = 0.05  # seconds after a stream took a warm channel its pool is refilled at the latest
WARMING_AT_ONCE = 2  # handshakes in flight per pool: a burst would stall the loops of both gateways
EARLY_MAX = 64 * 1024  # bytes of a client's sent behind the request before the reply is read
SPARE_AGE = 20.0  # seconds a warm channel is used at most (the server waits `first_line`)
# (peer site, raw key) -> None if this peer may use the relay, else why not
Authorize = Callable[[str, bytes], str | None]
# (request, peer site) -> the exported service to reach, else the refusal reason
Target = Callable[[StreamRequest, str], Service | str]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds per gateway: streams per peer site, seconds idle, seconds to set a stream up."""

    per_site: int = 64
    idle: float = 300.0
    setup: float = 10.0
    first_line: float = 30.0  # a warm channel waits this long for its request (SPARE_AGE is less)


def tls_contexts(ca_pem: str, cert_file: str, key_file: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: TLS 1.3 only, a CA-chained certificate required both ways."""
    out = []
    for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(cadata=ca_pem)
        ctx.check_hostname = False  # the peer is named by its certificate's site, checked by `authorize`
        ctx.verify_mode = ssl.CERT_REQUIRED
        out.append(ctx)
    return out[0], out[1]


def _identity(writer: asyncio.StreamWriter) -> tuple[str, bytes]:
    obj = writer.get_extra_info("ssl_object")
    der = obj.getpeercert(binary_form=True) if obj is not None else None
    if not der:
        raise ValueError("no peer certificate")
    return peer_identity(der)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


class RelayServer:
    """The exporting gateway's relay endpoint."""

    def __init__(
        self,
        context: ssl.SSLContext,
        host: str | None,
        port: int,
        *,
        site: str,
        authorize: Authorize,
        target: Target,
        limits: StreamLimits = StreamLimits(),
        refused: Callable[[str, str], None] = lambda reason, detail: None,
    ) -> None:
        self.context, self.host, self.port, self.site = context, host, port, site
        self.authorize, self.target, self.limits, self.refused = authorize, target, limits, refused
        self.streams: Counter[str] = Counter()  # peer site -> open streams
        self.carried = 0  # bytes spliced, both ways
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.context, ssl_handshake_timeout=10
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer, key = _identity(writer)
        except ValueError as exc:
            self.refused("bad-certificate", str(exc))
            await _close(writer)
            return
        why = self.authorize(peer, key)
        if why is not None:
            self.refused("untrusted-peer", f"{peer}: {why}")
            await _close(writer)
            return
        if self.streams[peer] >= self.limits.per_site:
            self.refused("too-many-streams", peer)
            writer.write(encode_reply("busy"))
            await _close(writer)
            return
        self.streams[peer] += 1
        try:
            await self._stream(peer, reader, writer)
        finally:
            self.streams[peer] -= 1
            if self.streams[peer] <= 0:
                del self.streams[peer]

    async def _stream(self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), self.limits.first_line)
        except TimeoutError:
            line = b""
        except (ValueError, ConnectionError, ssl.SSLError) as exc:
            self.refused("bad-request", f"{peer}: {exc or type(exc).__name__}")
            await _close(writer)
            return
        if not line:  # a warm channel the peer did not use (closed, or left to expire)
            await _close(writer)
            return
        try:
            req = decode_request(line)
        except ValueError as exc:
            self.refused("bad-request", f"{peer}: {exc or type(exc).__name__}")
            await _close(writer)
            return
        if req.op == "ping":
            writer.write(encode_reply(None if req.site == self.site else "wrong-site"))
            await _close(writer)
            return
        target = self.target(req, peer)
        if isinstance(target, str):
            self.refused(target, f"{peer} asked for {req.instance!r} ({req.type}) port {req.port}")
            writer.write(encode_reply(target))
            await _close(writer)
            return
        service = await _open_any(target.addresses, target.port, self.limits.setup)
        if service is None:
            writer.write(encode_reply("service-unreachable"))
            await _close(writer)
            return
        writer.write(encode_reply(None))
        self.carried += await splice((reader, writer), service, self.limits.idle)


async def _forward_early(
    client: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: asyncio.Future[bytes], sent: bytearray
) -> None:
    """Pass the client's bytes on behind the request until the `answer` comes (at most `EARLY_MAX`)."""
    while not answer.done() and len(sent) < EARLY_MAX and not client.at_eof():
        chunk = asyncio.ensure_future(client.read(EARLY_MAX - len(sent)))
        await asyncio.wait({answer, chunk}, return_when=asyncio.FIRST_COMPLETED)
        if not chunk.done():
            chunk.cancel()  # a cancelled StreamReader.read loses nothing: the splice reads it
            await asyncio.wait({chunk})
            if chunk.cancelled():
                return
        data = chunk.result()
        if not data:
            return
        sent += data
        writer.write(data)


async def _open_any(
    addresses: tuple[str, ...], port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    for address in sorted(addresses, key=lambda a: ":" in a):  # IPv4 first
        try:
            return await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except (OSError, TimeoutError) as exc:
            log.debug("relay: cannot reach %s port %d: %s", address, port, exc)
    return None


class RelayConnector:
    """The importing side: channels to other sites' relay endpoints."""

    def __init__(self, context: ssl.SSLContext, *, authorize: Authorize, limits: StreamLimits) -> None:
        self.context, self.authorize, self.limits = context, authorize, limits
        self.streams: Counter[str] = Counter()
        self.carried = 0
        self._spares: dict[
            tuple[str, str], list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]]
        ] = {}
        self._warming: Counter[tuple[str, str]] = Counter()
        self._policy: dict[tuple[str, str], SparePolicy] = {}  # how many spares each pool holds
        self.warm_streams = 0  # streams that found a warm channel
        self.cold_streams = 0  # streams that had to handshake on the client's time
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def _handshake(self, endpoint: str, site: str, setup: float) -> Channel:
        """A TLS channel to `site` at `endpoint`, its certificate checked; RelayError if not."""
        host, port = split_endpoint(endpoint)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.context, server_hostname=None),
                setup,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            detail = f"cannot reach the relay of {site} at {endpoint}: {exc}"
            raise RelayError(detail, "relay-down") from None
        try:
            peer, key = _identity(writer)
        except ValueError as exc:
            await _close(writer)
            raise RelayError(f"relay at {endpoint}: {exc}", "untrusted-peer") from None
        why = "wrong-site" if peer != site else self.authorize(peer, key)
        if why is not None:
            await _close(writer)
            raise RelayError(f"relay at {endpoint} is not {site}'s: {why}", "untrusted-peer")
        return reader, writer

    def _take_spare(self, endpoint: str, site: str) -> Channel | None:
        spares = self._spares.get((endpoint, site), [])
        now = time.monotonic()
        while spares:
            reader, writer, born = spares.pop()
            if now - born < SPARE_AGE and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def spares(self, endpoint: str | None = None, site: str | None = None) -> int:
        """Warm channels ready now: to `site` at `endpoint`, or to all sites (status, tests)."""
        if endpoint is not None and site is not None:
            return len(self._spares.get((endpoint, site), []))
        return sum(len(v) for v in self._spares.values())

    def warm(self, endpoint: str, site: str) -> None:
        """Keep channels to `site` handshaken ahead of need, as many as its `SparePolicy` says.

        Drops expired ones; surplus ones are left to age out.
        """
        if self._closed:
            return
        key = (endpoint, site)
        now = time.monotonic()
        spares = self._spares.setdefault(key, [])
        for spare in [x for x in spares if now - x[2] >= SPARE_AGE or x[0].at_eof()]:
            spares.remove(spare)
            spare[1].close()
        target = self._policy.setdefault(key, SparePolicy()).target(now)
        missing = target - len(spares) - self._warming[key]
        # A few handshakes at a time: a burst of them would stall this loop (and the
        # exporting gateway's) for the streams in flight; each one done calls warm again.
        missing = min(missing, WARMING_AT_ONCE - self._warming[key])
        for _ in range(max(0, missing)):
            self._warming[key] += 1
            task = asyncio.ensure_future(self._add_spare(endpoint, site))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _add_spare(self, endpoint: str, site: str) -> None:
        key = (endpoint, site)
        try:
            reader, writer = await self._handshake(endpoint, site, self.limits.setup)
        except RelayError as exc:
            log.debug("relay: no warm channel: %s", exc)
            return
        finally:
            self._warming[key] -= 1
        self._spares.setdefault(key, []).append((reader, writer, time.monotonic()))
        self.warm(endpoint, site)  # the next one, if the pool is still short

    async def close(self) -> None:
        self._closed = True
        for t in list(self._tasks):
            t.cancel()
        for spares in self._spares.values():
            for _, writer, _ in spares:
                writer.close()
        self._spares.clear()

    async def open(
        self,
        endpoint: str,
        req: StreamRequest,
        timeout: float | None = None,
        *,
        fresh: bool = False,
        early: asyncio.StreamReader | None = None,
    ) -> Channel:
        """A channel to `req.site` at `endpoint`, the request sent and accepted; RelayError if not.

        Uses a warm channel when one is ready (no handshake on the client's
        time), else handshakes now; `fresh` always handshakes (pings test the
        path).  `early`: the client's reader, whose first bytes follow the
        request without waiting for the reply (see `_request`).
        """
        setup = self.limits.setup if timeout is None else timeout
        if fresh:
            return await self._request(
                *await self._handshake(endpoint, req.site, setup), endpoint, req, setup
            )
        self._policy.setdefault((endpoint, req.site), SparePolicy()).taken(time.monotonic())
        spare = self._take_spare(endpoint, req.site)
        if spare is None:  # the pool ran dry: refill (and grow it) while this stream handshakes
            self.warm(endpoint, req.site)
        channel = None
        sent = bytearray()  # the client's bytes already sent after the request
        try:
            if spare is not None:
                try:
                    channel = await self._request(*spare, endpoint, req, setup, early=early, sent=sent)
                    self.warm_streams += 1
                except RelayError as exc:
                    if exc.reason != "relay-down":
                        raise
                    log.debug("relay: a warm channel had gone stale (%s); handshaking anew", exc)
            if channel is None:
                handshaken = await self._handshake(endpoint, req.site, setup)
                channel = await self._request(*handshaken, endpoint, req, setup, early=early, sent=sent)
                self.cold_streams += 1
        except RelayError as exc:
            if exc.reason == "refused":  # the site answers: keep channels ready for the next stream
                self.warm(endpoint, req.site)
            raise
        # Refill soon, not now: a handshake now would compete with this stream's first
        # round trip on both gateways (`carry` refills as soon as the first answer is back).
        asyncio.get_running_loop().call_later(REFILL_LATEST, self.warm, endpoint, req.site)
        return channel

    async def _request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: str,
        req: StreamRequest,
        setup: float,
        *,
        early: asyncio.StreamReader | None = None,
        sent: bytearray | None = None,
    ) -> Channel:
        """Send `req` (then `sent`, bytes a stale channel already carried) and wait for the reply.

        With `early` (the client's reader) the client's first bytes follow the
        request at once instead of one round trip later (at most `EARLY_MAX`,
        kept in `sent` so that a stale channel's retry can resend them): a
        client's connect then costs no round trip over the relay's own.
        The exporting side reads them only once it accepted the request.
        """

        async def exchange() -> bytes:
            answer = asyncio.ensure_future(reader.readline())
            try:
                if early is not None and sent is not None:
                    await _forward_early(early, writer, answer, sent)
                return await answer
            finally:
                answer.cancel()

        try:
            writer.write(encode_request(req) + (bytes(sent) if sent else b""))
            line = await asyncio.wait_for(exchange(), setup)
            if not line:
                raise ConnectionError("closed before answering")
            error = decode_reply(line)
            if error is not None:
                raise RelayError(f"{req.site} refused the stream: {error}", "refused")
        except BaseException as exc:
            await _close(writer)
            if isinstance(exc, (TimeoutError, ConnectionError, ssl.SSLError)):
                raise RelayError(f"relay of {req.site}: {exc or type(exc).__name__}", "relay-down") from None
            if isinstance(exc, ValueError) and not isinstance(exc, RelayError):
                raise RelayError(f"relay of {req.site}: {exc}", "bad-reply") from None
            raise
        return reader, writer

    async def ping(self, endpoint: str, site: str, timeout: float = 3.0) -> bool:
        """True if `site`'s relay at `endpoint` completes a handshake and answers within `timeout`."""
        try:
            _, writer = await self.open(endpoint, StreamRequest("ping", site), timeout, fresh=True)
        except RelayError as exc:
            log.debug("relay ping: %s", exc)
            return False
        await _close(writer)
        return True

    async def carry(
        self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter], endpoint: str, req: StreamRequest
    ) -> None:
        """Carry one accepted client connection to the exporting site (closes it when done)."""
        if self.streams[req.site] >= self.limits.per_site:
            log.debug("relay: too many streams to %s, refusing a client", req.site)
            await _close(client[1])
            return
        self.streams[req.site] += 1
        try:
            try:
                channel = await self.open(endpoint, req, early=client[0])
            except RelayError as exc:
                log.info("relay: %s", exc)
                await _close(client[1])
                return
            refill = functools.partial(self.warm, endpoint, req.site)
            self.carried += await splice(client, channel, self.limits.idle, first_back=refill)
        finally:
            self.streams[req.site] -= 1
            if self.streams[req.site] <= 0:
                del self.streams[req.site]
