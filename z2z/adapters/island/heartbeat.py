"""The UDP socket that carries the stage machine's `Heartbeat`s between island members.

Liveness by unicast instead of a multicast announcement every second: on Wi-Fi a
multicast frame goes out at the lowest rate and costs every client airtime, a
unicast datagram does not.  This adapter only moves bytes; what a heartbeat
says and whether it is authentic is `z2z.core.wire.gateways` (`encode_heartbeat`,
`decode_heartbeat`), and what to do with it is the stage machine's business.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

Receiver = Callable[[bytes, str], None]  # (datagram, sender "host:port")


def split_contact(contact: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port" (already checked by `valid_contact`)."""
    host, _, port = contact.rpartition(":")
    return host.strip("[]"), int(port)


def join_contact(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receive: Receiver) -> None:
        self.receive = receive

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.receive(data, join_contact(str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that just died: expected, its expiry handles it.
        log.debug("heartbeat socket: %s", exc)


class HeartbeatSocket:
    """One UDP socket bound to the gateway's link address; sends and receives heartbeats."""

    def __init__(self, receive: Receiver) -> None:
        self._receive = receive
        self._transport: asyncio.DatagramTransport | None = None
        self.contact = ""  # "host:port" peers send to, once open
        self.sent = self.received = self.send_errors = 0

    async def open(self, host: str, port: int = 0) -> str:
        """Bind to `host`:`port` (0: any free port, announced to the island); return the contact."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_datagram), local_addr=(host, port), family=family
        )
        self._transport = transport
        bound = transport.get_extra_info("sockname")
        self.contact = join_contact(host, int(bound[1]))
        return self.contact

    def _on_datagram(self, data: bytes, sender: str) -> None:
        self.received += 1
        self._receive(data, sender)

    def send(self, data: bytes, contact: str) -> None:
        if self._transport is None:
            return
        try:
            self._transport.sendto(data, split_contact(contact))
        except OSError as exc:  # no route (yet): the next round tries again
            self.send_errors += 1
            log.debug("heartbeat to %s: %s", contact, exc)
        else:
            self.sent += 1

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
