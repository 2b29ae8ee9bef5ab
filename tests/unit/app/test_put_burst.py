"""A burst at the DHT (issue 17): 1,000 services appearing at once are put with
backpressure (bounded concurrency, one pending put per instance) and all reach the
other site, without APScheduler "missed by" warnings.  In-memory doubles here; the
real dhtnode case is tests/unit/adapters/test_rendezvous_scale.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from support.helpers import T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.config import build
from z2z.app.executors import PutQueue
from z2z.app.gateway import Gateway
from z2z.core.bridge import Put
from z2z.core.records import Service


class SlowRendezvous(MemoryRendezvous):
    """A rendezvous whose puts take a while; records how many are in flight at once."""

    def __init__(self, dht: MemoryDht, delay: float) -> None:
        super().__init__(dht)
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.puts = 0

    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            await super().put(key, value_id, data)
            self.puts += 1
        finally:
            self.in_flight -= 1


def put(i: int, version: int = 0) -> Put:
    return Put(b"k" * 20, i * 10 + version, b"v%d" % version, T, f"svc {i}", "new")


async def test_a_burst_of_puts_is_bounded_and_the_newest_version_wins() -> None:
    store = SlowRendezvous(MemoryDht(), 0.002)
    queue = PutQueue(store, lambda ok, detail: None)
    queue.start()
    try:
        for i in range(1000):
            queue.submit(put(i))
        for i in range(0, 1000, 2):  # newer versions while the burst is under way
            queue.submit(put(i, 1))
        assert queue.pending == 1000  # bounded: one pending put per instance
        assert await queue.drain(30)
        assert store.most_in_flight <= PutQueue.concurrency
        stored = store.dht.values[b"k" * 20]
        latest = {i * 10 + (1 if i % 2 == 0 else 0) for i in range(1000)}
        assert latest <= set(stored)  # every instance's newest version arrived
        assert store.puts < 1500  # superseded versions still waiting were never sent
    finally:
        await queue.close()


async def test_1000_services_at_once_all_reach_the_other_site(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dht = MemoryDht()
    gws = []
    for site in ("campus-a", "campus-b"):
        cfg = build(
            {},
            {
                "site": site,
                "type": (T,),
                "state-dir": str(tmp_path / site),
                "election": False,
                "public": True,
                "max-services-per-site": 2000,
                "max-bytes-per-site": 4 * 1024 * 1024,
            },
        )
        gws.append(Gateway(cfg, MemoryLink(), SlowRendezvous(dht, 0.001)))
    a, b = gws
    caplog.set_level(logging.WARNING)
    await a.start()
    await b.start()
    for i in range(1000):
        a.service_up(Service(T, f"Printer {i}", f"printer{i}", 631, (), (f"10.1.{i // 250}.{i % 250 + 1}",)))
    await until(lambda: len(b.link.published) == 1000, timeout=30)
    assert a.rendezvous.most_in_flight <= PutQueue.concurrency  # type: ignore[attr-defined]
    await asyncio.sleep(1.5)  # a few scheduler rounds after the burst
    missed = [r for r in caplog.records if "missed by" in r.getMessage()]
    assert missed == []
    await a.stop()
    await b.stop()
