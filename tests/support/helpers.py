"""Small helpers shared by the unit tests of the app layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from z2z.core.records import Service

T = "_ipp._tcp"
PRINTER = Service(T, "Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9",))


async def until(cond: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until `cond()` is true, polling every 10 ms; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
