"""Anti-entropy by digest through real dhtnodes (REST proxies): a steady state does no full
get, and a lost push is still repaired because the exporter's summary changed.

Two gateways on in-memory links, two real dhtnodes on loopback; b's gets are recorded
by DHT key, so what crosses the proxy is checked, not what the gateway says about it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.dhtnet import DhtNetwork
from support.helpers import T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous import ProxyRendezvous
from z2z.adapters.rendezvous.base import DhtValue
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.core.records import Service
from z2z.core.wire import digest as digests

pytestmark = pytest.mark.skipif(shutil.which("dhtnode") is None, reason="needs dhtnode")

SERVICES = 20


def gateway(site: str, tmp_path: Path, url: str, private: Path | None) -> Gateway:
    settings: dict[str, object] = {
        "site": site,
        "type": (T,),
        "state-dir": str(tmp_path / site),
        "election": False,
        "anti-entropy": 3600.0,  # rounds are run by hand here
    }
    if private is None:
        settings["public"] = True
    else:
        settings["network-secret"] = str(private)
    return Gateway(build({}, settings), MemoryLink(), ProxyRendezvous(url))


def printer(i: int, port: int = 631) -> Service:
    return Service(T, f"Printer {i}", f"printer{i}", port, (b"rp=ipp/print",), (f"10.1.0.{i + 1}",))


@pytest.mark.parametrize("mode", ["public", "private"])
async def test_steady_state_does_no_full_get_and_a_lost_push_is_repaired(
    mode: str, dht_network: DhtNetwork, tmp_path: Path
) -> None:
    secret = None
    if mode == "private":
        from z2z.app import keys

        secret = tmp_path / "net.secret"
        keys.new_secret(secret)
    a = gateway("campus-a", tmp_path, dht_network.proxy_urls[0], secret)
    b = gateway("campus-b", tmp_path, dht_network.proxy_urls[1], secret)
    b.bridging.anti_entropy_every = 30.0  # how close to its TTL an import makes a round get in full
    await a.start()
    await b.start()
    try:
        for i in range(SERVICES):
            a.service_up(printer(i))
        await until(lambda: len(b.link.published) == SERVICES, timeout=30)
        summary_key = b.bridge.key_for(digests.summary_key_name(T))
        type_key = b.bridge.key_for(T)
        # a's summary is in the store once a's tick ran and its puts went out.
        await until(lambda: a.bridging.summaries._last.get(T) is not None, timeout=5)
        await until(lambda: a.bridging.puts.pending == 0, timeout=10)
        asked: list[bytes] = []
        original = b.rendezvous.get

        async def recording(key: bytes) -> list[DhtValue]:
            asked.append(key)
            return await original(key)

        b.rendezvous.get = recording  # type: ignore[method-assign]
        await b.bridging.anti_entropy()  # whatever the first rounds needed
        asked.clear()
        full = b.bridging.gate.full_gets
        for _ in range(3):
            await b.bridging.anti_entropy()
        assert asked == [summary_key] * 3  # only the summaries: no full get of the type key
        assert b.bridging.gate.full_gets == full and b.bridging.gate.skipped >= 3
        assert b.status().anti_entropy_skipped >= 3
        # Lose a push: b stops listening; a changes a service.  a's summary changes, so the
        # next round gets the type key in full and repairs it.
        b.bridging.listens[T].cancel()
        a.service_up(printer(3, port=632))
        # (a new summary at most every 10 s: antientropy.NEW_GAP)
        await until(lambda: a.bridge.export_digest(T)[1] == a.bridging.summaries._last[T][0], timeout=15)
        await until(lambda: a.bridging.puts.pending == 0, timeout=10)
        assert b.link.published[(T, "Printer 3")].port == 631  # the push really was lost
        asked.clear()
        await b.bridging.anti_entropy()
        assert asked == [summary_key, type_key]
        await until(lambda: b.link.published[(T, "Printer 3")].port == 632)
        # Reconciled: the next round is a summary read again.
        asked.clear()
        await b.bridging.anti_entropy()
        assert asked == [summary_key]
    finally:
        await a.stop()
        await b.stop()
