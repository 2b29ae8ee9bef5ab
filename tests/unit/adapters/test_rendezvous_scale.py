"""1,000 services through real dhtnodes (issue 17): a burst put with backpressure reaches the
other site, and a push deliberately lost is repaired by the periodic anti-entropy within one
period, through the REST proxy and through an embedded OpenDHT node.

The links are in-memory (what crosses is judged at the DHT end here; the link side of a
burst is the netns testbed's business); the DHT is two real dhtnodes on loopback."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest
from support.dhtnet import DhtNetwork
from support.helpers import T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous import EmbeddedRendezvous, ProxyRendezvous, Rendezvous
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.core.records import Service

try:
    import opendht  # noqa: F401

    HAVE_OPENDHT = True
except ImportError:
    HAVE_OPENDHT = False

pytestmark = pytest.mark.skipif(shutil.which("dhtnode") is None, reason="needs dhtnode")

SERVICES = 1000
ANTI_ENTROPY = 8.0


def gateway(site: str, tmp_path: Path, rendezvous: Rendezvous) -> Gateway:
    cfg = build(
        {},
        {
            "site": site,
            "type": (T,),
            "state-dir": str(tmp_path / site),
            "election": False,
            "public": True,
            "max-services-per-site": 2 * SERVICES,
            "max-bytes-per-site": 4 * 1024 * 1024,
            "anti-entropy": ANTI_ENTROPY,
        },
    )
    return Gateway(cfg, MemoryLink(), rendezvous)


def printer(i: int) -> Service:
    return Service(
        T, f"Printer {i}", f"printer{i}", 631, (b"rp=ipp/print",), (f"10.1.{i // 250}.{i % 250 + 1}",)
    )


@pytest.mark.parametrize("importer", ["proxy", "embedded"])
async def test_1000_services_burst_across_and_a_lost_push_is_repaired(
    importer: str, dht_network: DhtNetwork, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if importer == "embedded" and not HAVE_OPENDHT:
        pytest.skip("needs the opendht Python module")
    caplog.set_level(logging.WARNING)
    a = gateway("campus-a", tmp_path, ProxyRendezvous(dht_network.proxy_urls[0]))
    store: Rendezvous = (
        ProxyRendezvous(dht_network.proxy_urls[1])
        if importer == "proxy"
        else EmbeddedRendezvous(dht_network.bootstrap, ipv4="127.0.0.1", ipv6="::1", bootstrap_timeout=5.0)
    )
    b = gateway("campus-b", tmp_path, store)
    await a.start()
    await b.start()
    try:
        started = time.monotonic()
        for i in range(SERVICES):  # the burst: every service at once
            a.service_up(printer(i))
        await until(lambda: len(b.link.published) == SERVICES, timeout=90)
        burst = time.monotonic() - started
        assert a.bridging.puts.failures == 0  # no put timed out or failed
        # Lose a push: b stops listening (the type stays in the anti-entropy round).
        b.bridging.listens[T].cancel()
        rounds: list[float] = []  # when each anti-entropy round began
        full_get = b.bridging._full_get

        async def counted() -> None:
            rounds.append(time.monotonic())
            await full_get()

        b.bridging._full_get = counted  # type: ignore[method-assign]
        submitted = time.monotonic()
        a.service_up(printer(SERVICES))
        lost = (T, f"Printer {SERVICES}")
        await until(lambda: a.bridging.puts.pending == 0, timeout=10)
        put_done = time.monotonic()
        await asyncio.sleep(1.0)
        if not any(t >= submitted for t in rounds):
            assert lost not in b.link.published  # no round yet: the push really was lost
        # One anti-entropy period (with its jitter) plus the time of one full get.
        await until(lambda: lost in b.link.published, timeout=ANTI_ENTROPY * 1.1 + 10)
        assert any(t >= submitted for t in rounds)  # it came by a repair round, not a push
        repair = time.monotonic() - put_done
        status = b.status()
        assert status.rendezvous_ok and status.answers_too_big == {}
        assert status.values_skipped_known >= SERVICES  # the repair did not decode what b had
        missed = [r.getMessage() for r in caplog.records if "missed by" in r.getMessage()]
        assert missed == []
        print(
            f"{importer}: {SERVICES} services across in {burst:.1f} s; lost push repaired in {repair:.1f} s"
        )
    finally:
        await a.stop()
        await b.stop()
