"""An in-memory link: the `LinkBackend` protocol over a dict, for unit tests and simulation.

`published` is what the gateway would show on its link; a test plays the
devices of the link by calling the listener (`service_up` / `service_down`).
Publishing yields to the loop for a moment, as probing does on a real link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from z2z.adapters.link.base import LinkListener
from z2z.core.records import Service

PROBE_DELAY = 0.01  # seconds: long enough that a test sees operations overlap


class MemoryLink:
    """Proxies kept in `published`, keyed by (type, instance)."""

    # No real network behind it: the relay (z2z.app.relay) must not probe services' addresses.
    real_network = False

    def __init__(self) -> None:
        self.published: dict[tuple[str, str], Service] = {}
        self.listener: LinkListener | None = None

    async def start(self, types: Sequence[str], listener: LinkListener) -> None:
        self.listener = listener

    async def publish(self, service: Service) -> str:
        await asyncio.sleep(PROBE_DELAY)
        self.published[service.key] = service
        return service.instance

    async def withdraw(self, service_type: str, instance: str) -> None:
        self.published.pop((service_type, instance), None)

    async def close(self) -> None:
        self.published.clear()
