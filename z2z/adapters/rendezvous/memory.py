"""An in-memory rendezvous: the `Rendezvous` protocol over a dict, for unit tests and simulation.

Like httpx's mock transport, it lives beside the real adapters so that every
user of the protocol (the gateway's unit tests, benchmarks of the core) shares
one double instead of writing its own.  Several `MemoryRendezvous` on one
`MemoryDht` behave like gateways on one DHT: a put reaches every listener of
its key at once, and `up = False` makes every call fail as an absent
rendezvous would.
"""

from __future__ import annotations

from typing import Any

from z2z.adapters.rendezvous.base import ConditionLog, DhtValue, ListenCallback, RendezvousError


class MemoryDht:
    """The shared store: values by key and value id, and the listeners of each key."""

    def __init__(self) -> None:
        self.values: dict[bytes, dict[int, bytes]] = {}
        self.listeners: dict[bytes, list[ListenCallback]] = {}
        self.up = True


class _Listen:
    def __init__(self, dht: MemoryDht, key: bytes, callback: ListenCallback) -> None:
        self._dht, self._key, self._callback = dht, key, callback

    def cancel(self) -> None:
        listeners = self._dht.listeners.get(self._key, [])
        if self._callback in listeners:
            listeners.remove(self._callback)


class MemoryRendezvous:
    """One gateway's handle on a `MemoryDht`."""

    trouble: ConditionLog | None = None  # failures are plain RendezvousError("down"), logged by the caller

    def __init__(self, dht: MemoryDht) -> None:
        self.dht = dht

    def _check(self) -> None:
        if not self.dht.up:
            raise RendezvousError("down")

    async def start(self) -> None:
        self._check()

    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        self._check()
        self.dht.values.setdefault(key, {})[value_id] = data
        for callback in list(self.dht.listeners.get(key, [])):
            callback(DhtValue(value_id, data), False)

    async def get(self, key: bytes) -> list[DhtValue]:
        self._check()
        return [DhtValue(i, d) for i, d in self.dht.values.get(key, {}).items()]

    def listen(self, key: bytes, callback: ListenCallback) -> _Listen:
        self.dht.listeners.setdefault(key, []).append(callback)
        return _Listen(self.dht, key, callback)

    async def node_info(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        pass
