"""Leadership without a gateway and without opendht: the stage machine's actions carried out
through the narrow `LeadershipControl`, over in-memory links and DHTs.

The real proof, with real processes, mDNS and OpenDHT nodes, is tests/e2e/test_stages_e2e.py;
this checks in a second that leadership acts only through its control and its DHT factory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from support.helpers import until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.base import Rendezvous
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.executors import KeyedSerial
from z2z.app.leadership import Leadership
from z2z.core.security import Codec
from z2z.core.stages import StageSettings
from z2z.core.wire.gateways import GATEWAY_TYPE

FAST = {
    "announce_interval": 0.1,
    "expiry": 0.6,
    "startup_wait": 0.2,
    "claim_grace": 0.1,
    "registry_poll": 0.1,
    "registry_poll_structured": 0.5,
    "register_interval": 0.3,
}


@dataclass
class Control:
    """Records what leadership asked of its gateway."""

    link: MemoryLink
    store: Rendezvous
    codec: Codec = field(default_factory=lambda: Codec("z2z"))
    bridging: list[bool] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)
    reputs: int = 0
    rejects: list[str] = field(default_factory=list)
    ops: KeyedSerial = field(default_factory=KeyedSerial)

    def set_bridging(self, active: bool) -> None:
        self.bridging.append(active)

    def bridge_via(self, store: Rendezvous, name: str) -> None:
        if store is not self.store:  # as Bridging does: a move to where it already is, is none
            self.store = store
            self.moves.append(name)

    def reput_exports(self) -> None:
        self.reputs += 1

    def submit_link_op(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        self.ops.submit(key, work)

    def count_reject(self, reason: str) -> None:
        self.rejects.append(reason)

    def trust_site(self, site: str, signer: bytes | None) -> str | None:
        return None


class MemoryLeadersDht(MemoryRendezvous):
    """A leaders' DHT node over a shared in-memory store; its peers are the other nodes started."""

    def __init__(
        self, dht: MemoryDht, nodes: list[MemoryLeadersDht], bootstrap: Sequence[tuple[str, int]]
    ) -> None:
        super().__init__(dht)
        self.nodes = nodes
        self.bootstrap = list(bootstrap)

    async def start(self) -> None:
        self.nodes.append(self)

    async def close(self) -> None:
        self.nodes.remove(self)

    def add_bootstrap(self, nodes: Sequence[tuple[str, int]]) -> None:
        self.bootstrap += nodes

    async def node_info(self) -> dict[str, Any]:
        return {"peers": len(self.nodes) - 1}


def leadership(
    site: str, node: str, outside: MemoryDht, leaders_dht: MemoryDht, nodes: list[MemoryLeadersDht]
):  # type: ignore[no-untyped-def]
    link = MemoryLink()
    rendezvous = MemoryRendezvous(outside)
    control = Control(link, rendezvous)
    made: list[tuple[list[tuple[str, int]], int, int]] = []

    def factory(bootstrap: list[tuple[str, int]], port: int, network_id: int) -> MemoryLeadersDht:
        made.append((bootstrap, port, network_id))
        return MemoryLeadersDht(leaders_dht, nodes, bootstrap)

    settings = StageSettings(node=node, site=site, contact=f"10.0.0.{len(nodes) + 1}:4222", **FAST)  # type: ignore[arg-type]
    lead = Leadership(
        control, rendezvous, settings, dht_factory=factory, dht_port=4222, address="10.0.0.1", clock=loop_time
    )
    return lead, control, made


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_a_lone_gateway_leads_announces_and_registers() -> None:
    outside, leaders_dht, nodes = MemoryDht(), MemoryDht(), []
    lead, control, made = leadership("campus-a", "a" * 16, outside, leaders_dht, nodes)
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
    scheduler.start()
    await lead.start(scheduler)
    await until(lambda: control.bridging == [True], timeout=3)
    await until(lambda: any(t == GATEWAY_TYPE for t, _ in control.link.published))
    await until(lambda: control.codec.leaders_key() in outside.values)  # registered in the rendezvous
    assert lead.status()["state"] in ("leader", "interconnected")
    assert made == []  # alone: no leaders' DHT to form
    await lead.stop()
    await control.ops.drain(1)
    assert not control.link.published  # the goodbye went out on the link
    scheduler.shutdown(wait=False)


async def test_two_islands_form_the_leaders_dht_through_the_factory_and_move_bridging() -> None:
    outside, leaders_dht, nodes = MemoryDht(), MemoryDht(), []
    a, ctl_a, made_a = leadership("campus-a", "a" * 16, outside, leaders_dht, nodes)
    b, ctl_b, made_b = leadership("campus-b", "b" * 16, outside, leaders_dht, nodes)
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
    scheduler.start()
    await a.start(scheduler)
    await b.start(scheduler)
    await until(lambda: ctl_a.moves == ["dht"] and ctl_b.moves == ["dht"], timeout=10)
    assert made_a and made_b  # the nodes came from the factory, with the network's id and port
    assert made_a[0][1:] == made_b[0][1:] and made_a[0][1] == 4222
    assert ctl_a.store is a.dht and ctl_b.store is b.dht
    assert a.status()["stage"] == b.status()["stage"] == 3
    assert {r.site for r in a.leaders()} == {"campus-b"}
    scheduler.shutdown(wait=False)  # as Gateway.stop does, before it stops leadership
    await a.stop()
    await b.stop()
    assert not nodes  # both leaders' DHT nodes were closed


async def test_a_forged_announcement_is_counted_not_obeyed() -> None:
    outside, leaders_dht, nodes = MemoryDht(), MemoryDht(), []
    lead, control, _ = leadership("campus-a", "a" * 16, outside, leaders_dht, nodes)
    control.codec = Codec("z2z", b"s" * 32)  # this gateway is in a private network; the stranger is not
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
    scheduler.start()
    await lead.start(scheduler)
    from z2z.core.records import Service

    stranger = Service(
        GATEWAY_TYPE, "z2z-cccccccccccccccc-1", "x", 4222, (b"z2z=1", b"net=z2z"), ("10.0.0.9",)
    )
    lead.peer_up(stranger)
    assert control.rejects == ["bad-announcement"]
    await lead.stop()
    scheduler.shutdown(wait=False)


async def test_island_members_keep_alive_by_unicast_heartbeats_not_by_publishing() -> None:
    """Two gateways over real UDP sockets on loopback; mDNS is played by hand, once."""
    outside, leaders_dht, nodes = MemoryDht(), MemoryDht(), []
    a, ctl_a, _ = leadership("campus-a", "a" * 16, outside, leaders_dht, nodes)
    b, ctl_b, _ = leadership("campus-a", "b" * 16, outside, leaders_dht, nodes)
    for lead, ctl in ((a, ctl_a), (b, ctl_b)):
        lead.address = "127.0.0.1"
        ctl.codec = Codec("z2z", b"s" * 32)  # a private network: heartbeats carry the network's HMAC
    publishes = {"a": 0, "b": 0}
    for name, ctl in (("a", ctl_a), ("b", ctl_b)):
        original = ctl.link.publish

        async def counting(svc: Any, original: Any = original, name: str = name) -> str:
            publishes[name] += 1
            return await original(svc)

        ctl.link.publish = counting  # type: ignore[method-assign]
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
    scheduler.start()
    await a.start(scheduler)
    await b.start(scheduler)
    assert a.heartbeat is not None and b.heartbeat is not None
    assert a.settings.heartbeat.startswith("127.0.0.1:")
    await until(lambda: ctl_a.bridging == [True] and ctl_b.bridging == [True], timeout=3)  # apart
    [svc_a] = [s for (t, _), s in ctl_a.link.published.items() if t == GATEWAY_TYPE]
    assert b"hb=" + a.settings.heartbeat.encode() in svc_a.txt
    b.peer_up(svc_a)  # b's browser heard a's announcement once; heartbeats do the rest
    await until(lambda: b.machine.island.peers and a.machine.island.peers, timeout=3)
    await until(lambda: a.status()["leader"] == b.status()["leader"] == "b" * 16, timeout=3)
    # The new leader's own record (its role changed) may still be on its way to the link:
    # the baseline is taken once publishing has settled, not in the middle of it.
    before: dict[str, int] = {}
    for _ in range(30):
        before = dict(publishes)
        await asyncio.sleep(0.3)
        if publishes == before:
            break
    await asyncio.sleep(1.5)  # 15 heartbeat intervals (FAST: 0.1 s) without any publish
    assert publishes == before
    assert "a" * 16 in b.machine.island.peers and "b" * 16 in a.machine.island.peers
    assert a.heartbeat.received >= 10 and b.heartbeat.received >= 10
    # a stranger's datagram is counted and changes nothing
    a._heartbeat_in(b'{"v":"1","net":"z2z"}', "127.0.0.1:9")
    assert ctl_a.rejects == ["bad-announcement"]
    await b.stop()  # the memory link carries no mDNS goodbye: the unicast goodbye datagram does
    await until(lambda: a.status()["state"] != "follower", timeout=3)
    assert "b" * 16 not in a.machine.island.lost  # a goodbye, not an expiry (which a would probe)
    await a.stop()
    scheduler.shutdown(wait=False)
