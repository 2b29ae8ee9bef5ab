"""The runtime's executors with in-memory doubles (unit level; the real proof is
tests/e2e/test_bridging_e2e.py on the namespace testbed with dhtnode and real mDNS)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.helpers import PRINTER, T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.base import DhtValue
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.app.state import load
from z2z.core.records import Service


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
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
            },
        )
        gws.append(Gateway(cfg, MemoryLink(), MemoryRendezvous(dht)))
    return dht, gws[0], gws[1]


async def test_service_crosses_and_goes(pair) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    await b.start()
    a.service_up(PRINTER)
    await until(lambda: (T, "Printer") in b.link.published)
    assert b.link.published[(T, "Printer")].host == "printer-campus-a-z2z"
    a.service_down(T, "Printer")
    await until(lambda: not b.link.published)
    await a.stop()
    await b.stop()


async def test_puts_wait_out_an_outage_and_newest_wins(pair) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    await b.start()
    a.bridging.puts.backoff_max = 0.2
    dht.up = False
    a.service_up(PRINTER)
    a.service_up(Service(T, "Printer", "printer", 632, (), ("10.1.0.9",)))
    await until(lambda: a.bridging.puts.failures >= 2)
    dht.up = True
    await until(lambda: (T, "Printer") in b.link.published)
    assert b.link.published[(T, "Printer")].port == 632
    assert len(next(iter(dht.values.values()))) == 1  # the superseded version was never sent
    await a.stop()
    await b.stop()


async def test_clean_stop_tombstones_and_persists_seq(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    await b.start()
    a.service_up(PRINTER)
    await until(lambda: bool(b.link.published))
    await a.stop()
    await until(lambda: not b.link.published)
    assert load(tmp_path / "campus-a").last_seq == a.bridge.seq > 0
    await b.stop()


async def test_late_starter_imports_through_anti_entropy(pair) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    a.service_up(PRINTER)
    await until(lambda: bool(dht.values))
    await b.start()  # no push for it: the start-up get must find it
    await until(lambda: bool(b.link.published))
    await a.stop()
    await b.stop()


async def test_full_gets_never_overlap_and_a_request_while_busy_is_not_lost(pair) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await b.start()
    await asyncio.sleep(0.05)
    await until(lambda: not b.bridging._anti_entropy_running)  # the start-up round is over
    gets: list[str] = []
    running = 0
    original = b.rendezvous.get

    async def slow_get(key: bytes) -> list[DhtValue]:
        nonlocal running
        running += 1
        gets.append("start" if running == 1 else "OVERLAP")
        await asyncio.sleep(0.2)
        running -= 1
        return await original(key)

    b.rendezvous.get = slow_get
    first = asyncio.create_task(b.bridging.anti_entropy())
    await asyncio.sleep(0.05)
    await b.bridging.anti_entropy_job()  # the periodic job meets a running get: skips its round
    await b.bridging.anti_entropy_job()
    await first
    assert gets == ["start"]
    first = asyncio.create_task(b.bridging.anti_entropy())
    await asyncio.sleep(0.05)
    await b.bridging.anti_entropy()  # asked while busy (the rendezvous came back): one more round after
    await b.bridging.anti_entropy()
    await first
    assert gets == ["start", "start", "start"]  # rounds one after another, none lost, none extra
    await b.stop()


def test_status_file_is_rewritten_on_change_only(tmp_path: Path) -> None:
    """An idle gateway's snapshot differs only in `time`: no write (and no fsync) every second."""
    from dataclasses import replace as _replace

    from z2z.app.status import STATUS_FILE, GatewayStatus, StatusFile

    base = GatewayStatus(
        site="a", network="z2z", node="0" * 16, pid=1, time=1000.0, bridging=False, bridging_via="rendezvous",
        rendezvous=None, rendezvous_ok=True, rendezvous_failing=[], rendezvous_failures={}, exported=[],
        imported=[], rejected={}, flapping=[], private=False, site_key=None, filtered={}, types={},
        services=[], stages=None, leaders=[],
    )  # fmt: skip
    sf = StatusFile(str(tmp_path))
    assert sf.write(base)
    assert not any(sf.write(_replace(base, time=1000.0 + s)) for s in range(1, 59))
    assert sf.write(_replace(base, time=1059.0, bridging=True))  # a change: at once
    assert json.loads((tmp_path / STATUS_FILE).read_text())["bridging"] is True
    assert sf.write(_replace(base, time=1119.5, bridging=True))  # unchanged, but REFRESH passed
    assert sf.write(_replace(base, time=1119.6, bridging=True), stopped=True)
    assert sf.writes == 4
