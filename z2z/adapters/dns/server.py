"""The asyncio front of the unicast DNS-SD zone: one UDP endpoint and one TCP listener.

Each datagram or TCP frame goes to `DnsSdZone.answer` (z2z.adapters.dns.zone),
which is pure; this module only moves bytes, with bounded buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from z2z.adapters.dns.zone import TCP_MAX, UDP_MAX, DnsSdZone

log = logging.getLogger(__name__)


class _UdpProtocol(asyncio.DatagramProtocol):
    """One datagram in, at most one out; nothing is awaited, so nothing queues in Python."""

    # Replies are dropped while this much already waits in asyncio for a full socket
    # send buffer: under overload, queueing more only adds latency and memory.
    MAX_BUFFERED = 1 << 20

    def __init__(self, zone: DnsSdZone) -> None:
        self._answer = zone.answer
        self.transport: asyncio.DatagramTransport | None = None
        self._buffered: Callable[[], int] = lambda: 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a DatagramTransport in all but MRO
        # Not in the DatagramTransport ABC, but every asyncio loop's UDP transport has it.
        self._buffered = getattr(transport, "get_write_buffer_size", self._buffered)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # absorb bursts from many clients instead of dropping them
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self._answer(data, UDP_MAX)
        transport = self.transport
        if reply is not None and transport is not None and self._buffered() < self.MAX_BUFFERED:
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns udp: %s", exc)  # e.g. ICMP port unreachable from a client that left

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)


class _TcpProtocol(asyncio.Protocol):
    """RFC 7766 DNS over TCP: 2-byte length frames, pipelined queries answered in order."""

    def __init__(self, server: DnsSdServer) -> None:
        self._server = server
        self._answer = server.zone.answer
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        server = self._server
        if len(server._connections) >= server.max_tcp_connections:
            log.debug("dns tcp: connection cap %d reached, refusing one", server.max_tcp_connections)
            transport.abort()
            return
        self._transport = transport
        server._connections.add(self)
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._timer = loop.call_later(server.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        """Close after `idle_timeout` s without a query; one timer per connection, re-armed lazily."""
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        left = self._last + self._server.idle_timeout - loop.time()
        if left <= 0:
            if self._transport.get_write_buffer_size():
                self._transport.abort()  # replies the client never read: close() would wait on them
            else:
                self._transport.close()
        else:
            self._timer = loop.call_later(left, self._check_idle)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._last = asyncio.get_running_loop().time()
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            reply = self._answer(bytes(buf[2 : 2 + size]), TCP_MAX)
            del buf[: 2 + size]
            if reply is not None:
                out.append(len(reply).to_bytes(2, "big"))
                out.append(reply)
        if out:
            transport.write(b"".join(out))

    def pause_writing(self) -> None:
        # A client that sends but does not read: stop reading until its replies drain.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._server._connections.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class DnsSdServer:
    """Serve a `DnsSdZone` over UDP and TCP on one address and port.

    ``port=0`` picks an ephemeral port free for both protocols; read `port` after
    `start`.  The zone object stays the caller's: call ``zone.update(services)``
    whenever the gateway's view changes, and new queries see it at once.
    """

    def __init__(
        self,
        zone: DnsSdZone,
        host: str = "127.0.0.1",
        port: int = 53,
        *,
        tcp: bool = True,
        idle_timeout: float = 10.0,
        max_tcp_connections: int = 64,
    ) -> None:
        self.zone = zone
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.tcp = tcp
        self.idle_timeout = idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UdpProtocol | None = None
        self._tcp_server: asyncio.Server | None = None
        self._connections: set[_TcpProtocol] = set()

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when constructed with port 0)."""
        if self._port is None:
            raise RuntimeError("DnsSdServer is not started")
        return self._port

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port; with port 0, retry if TCP finds it taken."""
        loop = asyncio.get_running_loop()
        attempts = 20 if self._requested_port == 0 else 1
        for attempt in range(attempts):
            udp, udp_protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.zone), local_addr=(self.host, self._requested_port)
            )
            port = udp.get_extra_info("sockname")[1]
            if self.tcp:
                try:
                    self._tcp_server = await loop.create_server(
                        lambda: _TcpProtocol(self), self.host, port, backlog=128
                    )
                except OSError:
                    udp.close()
                    await udp_protocol.closed
                    if attempt + 1 == attempts:
                        raise
                    continue
            self._udp, self._udp_protocol, self._port = udp, udp_protocol, port
            log.info("dns-sd server for %s on %s port %d", self.zone.domain, self.host, port)
            return

    async def close(self) -> None:
        """Stop listening and drop open TCP connections; the port is free when this returns."""
        if self._udp is not None and self._udp_protocol is not None:
            self._udp.close()
            await self._udp_protocol.closed
            self._udp = self._udp_protocol = None
        server, self._tcp_server = self._tcp_server, None
        if server is not None:
            server.close()
            for conn in list(self._connections):
                conn.abort()
            await server.wait_closed()

    async def __aenter__(self) -> DnsSdServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
