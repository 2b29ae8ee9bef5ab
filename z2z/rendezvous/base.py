"""The rendezvous side of the gateway: an OpenDHT-compatible put/get/listen store.

Two implementations exist: the OpenDHT REST proxy spoken over httpx
(`z2z.rendezvous.proxy`) and an embedded OpenDHT node (`z2z.rendezvous.embedded`).
Both carry opaque bytes; what the bytes mean is `z2z.protocol`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class RendezvousError(RuntimeError):
    """The rendezvous could not be reached or refused an operation."""


class PutNotConfirmed(RendezvousError):
    """No DHT peer confirmed a put; the local node (or the proxy's node) still keeps it.

    Typical of a node without peers (a lone dhtnode answers 502): worth a retry,
    not an alarm.
    """


@dataclass(frozen=True, slots=True)
class DhtValue:
    """One value stored under a key: OpenDHT's 64-bit value id and its payload."""

    id: int
    data: bytes


# callback(value, expired): `expired` is True when the DHT reports the value gone.
ListenCallback = Callable[[DhtValue, bool], None]


class ListenHandle(Protocol):
    def cancel(self) -> None:
        """Stop listening; no callback is made after this returns."""


class Rendezvous(Protocol):
    """Put/get/listen on 20-byte keys (OpenDHT InfoHash)."""

    async def start(self) -> None:
        """Connect (or boot the embedded node); raise RendezvousError if unreachable."""

    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        """Store `data` under `key` with `value_id`; raise RendezvousError on failure."""

    async def get(self, key: bytes) -> list[DhtValue]:
        """Every value currently stored under `key`; raise RendezvousError on failure."""

    def listen(self, key: bytes, callback: ListenCallback) -> ListenHandle:
        """Call `callback` on the event loop for each value that arrives under `key`.

        The subscription survives rendezvous outages: the implementation reconnects
        with backoff and replays what is stored when it comes back.
        """

    async def node_info(self) -> dict[str, Any]:
        """Diagnostics: node id, number of good peers, ... (implementation-defined keys)."""

    async def close(self) -> None:
        """Cancel listens and release connections (the embedded node shuts down)."""
