"""Unit tests of the pure election / stage machine (z2z.core.stages): islands wired by hand."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from z2z.core.stages import (
    TICK,
    Announce,
    Announcement,
    BecomeLeader,
    Bootstrap,
    BridgeVia,
    DhtStatus,
    Goodbye,
    Heartbeat,
    JoinStructure,
    LeaderRecord,
    LeadersRead,
    PeerAnnounced,
    PeerGoodbye,
    ReadLeaders,
    Register,
    RendezvousDown,
    RendezvousUp,
    StageMachine,
    StageSettings,
    StartDht,
    Started,
    State,
    StepDown,
    StopDht,
    Stopping,
    Store,
    WireError,
    decode_record,
    encode_record,
    from_txt,
    leaders_key,
    network_id,
    table,
    to_txt,
)
from z2z.core.stages.machine import _RULES

NOW = 1_800_000_000.0
DOCS = Path(__file__).resolve().parents[3] / "docs" / "stages.md"


def nid(i: int) -> str:
    return f"{i:016x}"


def contact(i: int) -> str:
    return f"10.0.{i // 256}.{i % 256}:4222"


def gw(i: int, rank: int = 0, site: str = "a", **kw: Any) -> StageMachine:
    s = StageSettings(node=nid(i), site=site, rank=rank, incarnation=1, contact=contact(i), **kw)
    return StageMachine(s)


def of(actions: Iterable[object], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


class Link:
    """Gateways of one island; link packets are delivered at once, in order, within a group."""

    def __init__(self, *machines: StageMachine, now: float = NOW) -> None:
        self.m = {m.settings.node: m for m in machines}
        self.now = now
        self.log: list[tuple[str, object, float]] = []  # (node, action, time), every action
        self.group: dict[str, int] = {}  # partition: node → group (default 0)
        self.down: set[str] = set()  # crashed: neither sends nor receives
        self.multicast_lost = False  # every multicast packet is lost (heartbeats still arrive)

    def add(self, m: StageMachine) -> StageMachine:
        self.m[m.settings.node] = m
        return m

    def start(self, *nodes: str) -> None:
        for n in nodes or list(self.m):
            self.feed(n, Started())

    def feed(self, node: str, event: object) -> list:
        acts = self.m[node].handle(event, self.now)
        self.deliver(node, acts)
        return acts

    def deliver(self, sender: str, actions: list) -> None:
        queue = [(sender, a) for a in actions]
        while queue:
            src, act = queue.pop(0)
            self.log.append((src, act, self.now))
            to: tuple[str, ...] | None = None  # None: multicast to the whole link
            if isinstance(act, Announce):
                ev: object = PeerAnnounced(act.info)
                to = None if not self.multicast_lost else act.to
            elif isinstance(act, Heartbeat):
                ev, to = PeerAnnounced(act.info), act.to
            elif isinstance(act, Goodbye):
                ev = PeerGoodbye(src, self.m[src].settings.incarnation)
                to = None if not self.multicast_lost else act.to
            else:
                continue
            if to is None and self.multicast_lost:
                continue
            for n, m in self.m.items():
                if to is not None and m.settings.heartbeat not in to:
                    continue
                if n != src and n not in self.down and self.group.get(n, 0) == self.group.get(src, 0):
                    queue += [(n, a) for a in m.handle(ev, self.now)]

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += step
            for n in list(self.m):
                if n not in self.down:
                    self.feed(n, TICK)

    def leaders(self) -> list[str]:
        return sorted(n for n, m in self.m.items() if m.state.leading and n not in self.down)

    def became_leader(self, since: float = 0.0) -> list[tuple[str, float]]:
        return [(n, t) for n, a, t in self.log if isinstance(a, BecomeLeader) and t >= since]


# -- wire ----------------------------------------------------------------------


ANN = Announcement(
    network="z2z",
    site="campus-a",
    node=nid(7),
    rank=3,
    state=State.STRUCTURED,
    incarnation=12,
    seq=99,
    leader=nid(7),
    structure=nid(9),
    size=4,
    contact="10.0.0.7:4222",
    contacts=("10.0.0.8:4222", "[2001:db8::1]:4222"),
)


def test_txt_round_trip() -> None:
    assert from_txt(to_txt(ANN)) == ANN
    assert from_txt({k: v.encode() for k, v in to_txt(ANN).items()}) == ANN


@pytest.mark.parametrize(
    ("key", "value"),
    [("v", "2"), ("node", "XYZ"), ("state", "king"), ("state", "init"), ("seq", "-1"), ("rank", "1e9"),
     ("inc", ""), ("dht", "host:99999"), ("peers", "a:1,b:2,c:3,d:4"), ("site", b"\xff"), ("inc", None)],
)  # fmt: skip
def test_txt_is_parsed_strictly(key: str, value: str | bytes | None) -> None:
    txt: dict[str, str | bytes] = {**to_txt(ANN)}
    if value is None:
        del txt[key]
    else:
        txt[key] = value
    with pytest.raises(WireError):
        from_txt(txt)


RECORD = LeaderRecord("z2z", "campus-a", nid(1), "10.0.0.1:4222", nid(2), 5, NOW, 60)


def test_record_round_trip() -> None:
    data = encode_record(RECORD)
    assert len(data) < 300 and decode_record(data) == RECORD


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"", b""), (b"", b"[]"), (b"", b"{" * 2000), (b'"ttl":60', b'"ttl":true'),
     (b'"size":5', b'"size":5,"x":1'), (b'"ts":1800000000.0', b'"ts":1e999'), (b'"z2z":1', b'"z2z":2'),
     (b'"10.0.0.1:4222"', b'""'), (b'"site":"campus-a"', b'"site":"-bad"')],
)  # fmt: skip
def test_record_is_parsed_strictly(old: bytes, new: bytes) -> None:
    data = encode_record(RECORD)
    mangled = data.replace(old, new) if old else new
    assert mangled != data
    with pytest.raises(WireError):
        decode_record(mangled)


def test_derived_ids() -> None:
    n = network_id("z2z")
    assert 0 < n < 2**32 and n == network_id("z2z") != network_id("other")
    assert len(leaders_key("z2z")) == 20 != 0


# -- stage 1: election -----------------------------------------------------------


def test_cold_start_elects_highest_rank_then_highest_node() -> None:
    link = Link(gw(1), gw(2), gw(3))
    link.start()
    link.run(3)
    assert link.leaders() == [nid(3)]  # same rank: higher node id
    assert all(m.leader() == nid(3) for m in link.m.values())
    link = Link(gw(1, rank=5), gw(2), gw(3))
    link.start()
    link.run(3)
    assert link.leaders() == [nid(1)]  # rank first
    assert len(link.became_leader()) == 1  # nobody else ever claimed: no flap


def test_staggered_start_still_elects_the_top_candidate() -> None:
    link = Link(gw(1), gw(2), gw(3))
    link.start(nid(1))
    link.run(0.5)
    link.start(nid(3))  # starts later but is higher: the earlier ones wait for it
    link.run(0.5)
    link.start(nid(2))
    link.run(4)
    assert link.leaders() == [nid(3)]
    assert [n for n, _ in link.became_leader()] == [nid(3)]


def test_newcomer_with_higher_rank_does_not_preempt_a_healthy_leader() -> None:
    link = Link(gw(1), gw(2))
    link.start()
    link.run(3)
    assert link.leaders() == [nid(2)]
    newcomer = link.add(gw(9, rank=100))
    link.start(newcomer.settings.node)
    link.run(10)
    assert link.leaders() == [nid(2)]
    assert newcomer.state is State.FOLLOWER and newcomer.leader() == nid(2)
    # the leader answered the newcomer at once, so it followed well inside its startup window
    assert newcomer.stats["rule:follow"] == 1


def test_clean_exit_hands_over_in_the_same_event() -> None:
    link = Link(gw(1), gw(2), gw(3))
    link.start()
    link.run(3)
    t0 = link.now
    acts = link.feed(nid(3), Stopping())
    assert [type(a) for a in acts] == [StepDown, Goodbye]
    assert link.m[nid(3)].state is State.STOPPED
    assert link.became_leader(since=t0) == [(nid(2), t0)]  # same instant: the goodbye itself
    assert link.leaders() == [nid(2)]


def test_crash_takeover_after_expiry() -> None:
    link = Link(gw(1), gw(2), gw(3))
    link.start()
    link.run(3)
    t0 = link.now
    link.down.add(nid(3))  # kill -9: no goodbye
    link.run(5, step=0.01)
    [(who, when)] = link.became_leader(since=t0)
    s = link.m[nid(2)].settings
    assert who == nid(2)
    assert s.expiry - s.announce_interval - 0.02 <= when - t0 <= s.expiry + 0.02


def test_split_brain_after_partition_leaves_exactly_one_leader() -> None:
    link = Link(*(gw(i) for i in range(1, 7)))
    link.start()
    link.run(3)
    assert link.leaders() == [nid(6)]
    link.group = {nid(i): 1 for i in (1, 2, 3)}  # the link is cut in two
    link.run(6)
    assert link.leaders() == [nid(3), nid(6)]
    link.group = {}  # healed
    t0 = link.now
    link.run(1.0)
    assert link.leaders() == [nid(6)]
    downs = [(n, t) for n, a, t in link.log if isinstance(a, StepDown) and t >= t0]
    assert [n for n, _ in downs] == [nid(3)]
    assert downs[0][1] - t0 <= link.m[nid(3)].settings.announce_interval + 0.05


def test_stale_and_replayed_announcements_are_ignored() -> None:
    a, b = gw(1), gw(2)
    link = Link(a, b)
    link.start()
    link.run(3)
    heard = [act.info for n, act, _ in link.log if n == nid(2) and isinstance(act, Announce)]
    last_leader = heard[-1]
    assert last_leader.state is State.LEADER
    link.feed(nid(2), Stopping())
    assert a.state.leading
    # replays of b's last announcement, of an older one, and of an older incarnation change nothing
    for info in (last_leader, heard[0], replace(last_leader, incarnation=0, seq=10**6)):
        assert a.handle(PeerAnnounced(info), link.now) == []
        assert a.island.leader() is None and a.state.leading
    # a restart (new incarnation) is heard; a late goodbye of the old incarnation does not remove it
    reborn = replace(last_leader, incarnation=2, seq=1, state=State.STARTING)
    a.handle(PeerAnnounced(reborn), link.now)
    assert nid(2) in a.island.peers
    a.handle(PeerGoodbye(nid(2), 1), link.now)
    assert nid(2) in a.island.peers
    # our own echo and other networks are ignored too
    assert a.handle(PeerAnnounced(replace(reborn, node=nid(1), seq=5)), link.now) == []
    assert a.handle(PeerAnnounced(replace(reborn, network="other", seq=6)), link.now) == []
    assert set(a.island.peers) == {nid(2)}


# -- stages 2-4: rendezvous, structure, merges ------------------------------------------


def leader(i: int, up: bool = True, **kw: Any) -> StageMachine:
    """A gateway alone on its link, already leading (after its startup window)."""
    m = gw(i, site=f"site{i}", **kw)
    if up:
        m.handle(RendezvousUp(), NOW)
    m.handle(Started(), NOW)
    acts = m.handle(TICK, NOW + 2)
    assert m.state is (State.INTERCONNECTED if up else State.LEADER)
    assert of(acts, BecomeLeader)
    return m


def rec(m: StageMachine, t: float = NOW + 2) -> LeaderRecord:
    return m._record(t)


def record(i: int, structure: str = "", t: float = NOW + 2) -> LeaderRecord:
    return LeaderRecord("z2z", f"site{i}", nid(i), contact(i), structure, 0, t, 60)


def test_leader_interconnects_through_the_rendezvous() -> None:
    m = gw(1)
    m.handle(Started(), NOW)
    acts = m.handle(TICK, NOW + 2)
    assert m.state is State.LEADER and [type(a) for a in acts] == [BecomeLeader, Announce]
    acts = m.handle(RendezvousUp(), NOW + 3)
    assert m.state is State.INTERCONNECTED
    assert acts[0] == BridgeVia(Store.RENDEZVOUS)
    [reg] = of(acts, Register)
    assert reg.store is Store.RENDEZVOUS and reg.record.node == nid(1) and reg.record.contact == contact(1)
    assert of(acts, ReadLeaders) == [ReadLeaders(Store.RENDEZVOUS)]
    # alone in the registry: no structure yet; polls again
    assert m.handle(LeadersRead((), Store.RENDEZVOUS), NOW + 3.1) == []
    assert ReadLeaders(Store.RENDEZVOUS) in m.handle(TICK, NOW + 5.2)


def test_formation_founder_rule_and_structured_bridging() -> None:
    lo, hi = leader(1), leader(2)
    acts_lo = lo.handle(LeadersRead((rec(hi),), Store.RENDEZVOUS), NOW + 3)
    [start_lo] = of(acts_lo, StartDht)
    assert start_lo == StartDht(network_id("z2z"), (contact(2),), nid(2))  # the higher id founds
    assert lo.state is State.FORMING
    acts_hi = hi.handle(LeadersRead((rec(lo, NOW + 3),), Store.RENDEZVOUS), NOW + 3.5)
    [start_hi] = of(acts_hi, StartDht)
    assert start_hi.structure == nid(2) and start_hi.bootstrap == (contact(1),)  # founder, joined by lo
    for m in (lo, hi):
        acts = m.handle(DhtStatus(1, ()), NOW + 4)
        assert m.state is State.STRUCTURED
        assert acts[:3] == [
            BridgeVia(Store.DHT),
            Register(rec(m, NOW + 4), Store.DHT),
            ReadLeaders(Store.DHT),
        ]


def test_form_threshold_is_a_setting() -> None:
    m = leader(1, form_threshold=2)
    assert m.handle(LeadersRead((record(2),), Store.RENDEZVOUS), NOW + 3) == []
    assert m.state is State.INTERCONNECTED
    m.handle(LeadersRead((record(3),), Store.RENDEZVOUS), NOW + 3)
    assert m.state is State.FORMING and m.structure == nid(3)
    # but an existing structure is joined whatever the threshold
    m = leader(1, form_threshold=5)
    [start] = of(m.handle(LeadersRead((record(2, nid(2)),), Store.RENDEZVOUS), NOW + 3), StartDht)
    assert start.structure == nid(2) and start.bootstrap == (contact(2),)


def structured(i: int, structure: str, up: bool = True) -> StageMachine:
    m = leader(i, up=up)
    m.handle(LeadersRead((record(90, structure),), Store.RENDEZVOUS), NOW + 3)
    m.handle(DhtStatus(2, (contact(90),)), NOW + 3.5)
    assert m.state is State.STRUCTURED and m.structure == structure
    return m


def test_rendezvous_loss_before_formation_waits() -> None:
    m = leader(1)
    assert m.handle(RendezvousDown(), NOW + 3) == []
    assert m.state is State.LEADER
    acts = m.handle(RendezvousUp(), NOW + 4)
    assert m.state is State.INTERCONNECTED and of(acts, Register)


def test_rendezvous_loss_after_formation_changes_nothing() -> None:
    m = structured(1, nid(90))
    before = m.status()
    assert m.handle(RendezvousDown(), NOW + 5) == []
    assert m.state is State.STRUCTURED and m.via is Store.DHT
    later = m.handle(TICK, NOW + 60)
    assert not of(later, BridgeVia) and not [a for a in of(later, Register) if a.store is Store.RENDEZVOUS]
    assert {a.store for a in of(later, Register)} == {Store.DHT}  # registration goes on in the DHT
    assert {k: v for k, v in m.status().items() if k != "rendezvous"} == {
        k: v for k, v in before.items() if k != "rendezvous"
    }


@pytest.mark.parametrize(
    ("mine", "theirs", "joins"),
    [
        (2, 3, True),  # smaller joins larger
        (3, 2, False),  # larger stays
        (2, 2, None),  # tie: the lower structure id joins
    ],
)
def test_merge_decision(mine: int, theirs: int, joins: bool | None) -> None:
    for s_mine, s_other in ((nid(0xA0), nid(0xB0)), (nid(0xB0), nid(0xA0))):
        m = structured(1, s_mine)
        # our structure: us, node 90 (see `structured`) and mine - 2 others; theirs: `theirs` leaders
        ours = tuple(record(10 + k, s_mine, NOW + 4) for k in range(mine - 2))
        other = tuple(record(20 + k, s_other, NOW + 4) for k in range(theirs))
        acts = m.handle(LeadersRead((*ours, *other), Store.RENDEZVOUS), NOW + 4)
        expect = joins if joins is not None else s_mine < s_other
        assert (m.structure == s_other) is expect, (mine, theirs, s_mine)
        assert bool(of(acts, JoinStructure)) is expect


def test_merge_actions_and_republish() -> None:
    m = structured(1, nid(0xA0))
    acts = m.handle(LeadersRead(tuple(record(20 + k, nid(0xB0)) for k in range(3)), Store.DHT), NOW + 4)
    [join] = of(acts, JoinStructure)
    assert join.structure == nid(0xB0) and len(join.contacts) == 3
    assert {a.store for a in of(acts, Register)} == {Store.RENDEZVOUS, Store.DHT}
    assert all(a.record.structure == nid(0xB0) for a in of(acts, Register))
    assert m.state is State.STRUCTURED and of(acts, Announce)[0].info.structure == nid(0xB0)
    # nothing more once there
    assert of(m.handle(LeadersRead((), Store.DHT), NOW + 5), JoinStructure) == []


def test_handover_keeps_the_island_in_its_structure_without_rendezvous() -> None:
    a, b = gw(1), gw(2)
    link = Link(a, b)
    link.start()
    link.run(3)
    assert b.state is State.LEADER
    link.feed(nid(2), LeadersRead((record(50, nid(50)), record(51, nid(50))), Store.RENDEZVOUS))
    link.feed(nid(2), DhtStatus(2, (contact(50), contact(51))))
    assert b.state is State.STRUCTURED
    link.run(1.1)  # a hears b's structure and contacts
    link.down.add(nid(2))
    link.run(4)
    assert a.state is State.FORMING and a.structure == nid(50)
    [start] = [act for n, act, _ in link.log if n == nid(1) and isinstance(act, StartDht)]
    assert start.structure == nid(50) and set(start.bootstrap) == {contact(50), contact(51)}
    link.feed(nid(1), DhtStatus(1, (contact(50),)))
    assert a.state is State.STRUCTURED and a.via is Store.DHT


def test_leaders_meeting_on_a_link_one_yields_and_the_larger_structure_introduces_itself() -> None:
    low, high = structured(1, nid(0xA0)), structured(2, nid(0xB0))
    high.handle(LeadersRead(tuple(record(30 + k, nid(0xB0)) for k in range(4)), Store.DHT), NOW + 4)
    link = Link(low, high, now=NOW + 5)
    link.feed(nid(1), TICK)
    link.feed(nid(2), TICK)
    link.run(1.5)
    assert low.state is State.FOLLOWER and high.state is State.STRUCTURED  # the lower (rank, node) yields
    assert [n for n, a, _ in link.log if isinstance(a, StopDht)] == [nid(1)]
    # high's structure is the larger one: it bootstraps to the other one's contacts instead of joining it,
    # so that both DHTs become one and the other leaders find B0's records there (and join it)
    boots = [a for n, a, _ in link.log if n == nid(2) and isinstance(a, Bootstrap)]
    assert boots and contact(1) in boots[0].contacts and high.structure == nid(0xB0)
    assert not [a for n, a, _ in link.log if isinstance(a, JoinStructure)]


def test_survivor_on_a_link_joins_the_other_structure_when_its_own_loses() -> None:
    low, high = structured(1, nid(0xC0)), structured(2, nid(0xB0))
    t = NOW + 200
    for m in (low, high):
        m.handle(LeadersRead((), Store.DHT), t)  # node 90's record expired: each structure is itself alone
        assert m.registry.count(m.structure, m.structure) == 1
    low_info = of(low.handle(TICK, t), Announce)[0].info
    acts = high.handle(PeerAnnounced(low_info), t)  # node 2 outranks node 1: high keeps the island
    [join] = of(acts, JoinStructure)
    # 1 against 1: the higher id wins; low's announced contacts come first (low is about to step down)
    assert join.structure == nid(0xC0) and join.contacts[0] == contact(90) and contact(1) in join.contacts
    assert high.structure == nid(0xC0) and high.state is State.STRUCTURED


# -- table and docs ----------------------------------------------------------------------


def test_table_binds_and_docs_show_it() -> None:
    assert _RULES  # every guard and effect name resolved at import
    effects = {r.effect for r in table.RULES}
    assert effects == set(table.EFFECTS)
    assert table.render() in DOCS.read_text(), "docs/stages.md must contain table.render() verbatim"


def test_stop_from_every_state() -> None:
    m = gw(1)
    assert m.handle(Stopping(), NOW) == [] and m.state is State.STOPPED
    assert m.handle(Started(), NOW) == [] and m.handle(TICK, NOW + 1) == []
    f = structured(2, nid(9))
    assert [type(a) for a in f.handle(Stopping(), NOW + 9)] == [StepDown, StopDht, Goodbye]


# -- properties: random event sequences ---------------------------------------------------


def random_info(rng: random.Random) -> Announcement:
    return Announcement(
        network=rng.choice(["z2z", "z2z", "x"]),
        site=rng.choice(["a", "b"]),
        node=nid(rng.randrange(1, 12)),
        rank=rng.randrange(-2, 3),
        state=rng.choice([s for s in State if s not in (State.INIT, State.STOPPED)]),
        incarnation=rng.randrange(0, 4),
        seq=rng.randrange(0, 50),
        structure=rng.choice(["", nid(1), nid(2)]),
        contact=rng.choice(["", contact(rng.randrange(1, 12))]),
        contacts=tuple(contact(rng.randrange(1, 12)) for _ in range(rng.randrange(0, 4))),
    )


def random_event(rng: random.Random) -> object:
    k = rng.randrange(10)
    if k == 0:
        return PeerAnnounced(random_info(rng))
    if k == 1:
        return PeerGoodbye(nid(rng.randrange(1, 12)), rng.randrange(0, 4))
    if k == 2:
        recs = tuple(
            record(
                rng.randrange(1, 12), rng.choice(["", nid(1), nid(2), nid(3)]), NOW + rng.uniform(-100, 100)
            )
            for _ in range(rng.randrange(0, 5))
        )
        return LeadersRead(recs, rng.choice(list(Store)))
    if k == 3:
        return DhtStatus(rng.randrange(-1, 4), tuple(contact(rng.randrange(1, 12)) for _ in range(2)))
    return rng.choice(
        [TICK, TICK, TICK, RendezvousUp(), RendezvousDown(), Started(), Stopping() if k == 9 else TICK]
    )


@pytest.mark.parametrize("seed", range(100))
def test_random_events_never_raise_and_follow_the_table(seed: int) -> None:
    rng = random.Random(seed)
    m = gw(5, rank=rng.randrange(-1, 2))
    now = NOW
    allowed = {(s, r.targets) for r in table.RULES for s in r.states}
    for _ in range(400):
        now += rng.choice([0.0, 0.01, 0.3, 1.0, 5.0, -0.5])  # the clock may even step back
        before = m.state
        m.last_rule = None
        acts = m.handle(random_event(rng), now)
        assert isinstance(acts, list)
        if m.last_rule is None:
            assert m.state is before
        else:
            assert (before, m.last_rule.targets) in allowed
            assert m.state in m.last_rule.targets if m.last_rule.targets else m.state is before
        assert m.next_deadline() == m.next_deadline()  # computable in every state
        m.status()


@pytest.mark.parametrize("seed", range(100))
def test_random_islands_settle_to_one_leader(seed: int) -> None:
    """Random starts, crashes, restarts, goodbyes and partitions; once the link is whole and quiet
    for the settle window, every connected island has exactly one leader, the same for all."""
    rng = random.Random(seed)
    n = rng.randrange(2, 8)
    link = Link(*(gw(i, rank=rng.randrange(0, 3)) for i in range(1, n + 1)))
    incarnation = {nd: 1 for nd in link.m}
    for nd in link.m:
        if rng.random() < 0.7:
            link.start(nd)
    for _ in range(rng.randrange(5, 30)):
        link.run(rng.choice([0.05, 0.3, 1.0, 2.5]))
        nd = rng.choice(list(link.m))
        what = rng.randrange(6)
        if what == 0:
            link.down.add(nd)  # crash
        elif what == 1 and nd in link.down:  # restart with a new incarnation
            incarnation[nd] += 1
            s = replace(link.m[nd].settings, incarnation=incarnation[nd])
            link.m[nd] = StageMachine(s)
            link.down.discard(nd)
            link.start(nd)
        elif what == 2 and nd not in link.down:
            link.feed(nd, Stopping())
        elif what == 3:
            link.group = {x: rng.randrange(2) for x in link.m}
        elif what == 4:
            link.group = {}
        elif what == 5 and link.m[nd].state is State.INIT and nd not in link.down:
            link.start(nd)
    link.group = {}
    # a stopped gateway is restarted too, so that some gateway is alive
    for nd, m in list(link.m.items()):
        if m.state is State.STOPPED or nd in link.down:
            incarnation[nd] += 1
            link.m[nd] = StageMachine(replace(m.settings, incarnation=incarnation[nd]))
            link.down.discard(nd)
        if link.m[nd].state is State.INIT:
            link.start(nd)
    s = link.m[nid(1)].settings
    link.run(s.startup_wait + s.expiry + s.claim_grace + s.announce_interval + 0.2)
    live = [m for m in link.m.values()]
    assert len(link.leaders()) == 1, [(m.settings.node, m.state) for m in live]
    [lead] = link.leaders()
    assert all(m.leader() == lead for m in live)
    # and it stays so
    link.run(5)
    assert link.leaders() == [lead]


# -- the simulator drives this very machine ------------------------------------------------


def test_simulator_small_world() -> None:
    """A small run of bench/simulate.py: one structure soon, failover within the targets."""
    root = str(DOCS.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.simulate import Model, run

    r = run(Model(gateways=300, islands=30, kills=3, stops=3))
    assert r["cold_start"]["single_structure_s"] < 10 and r["cold_start"]["stable_after_settle"]
    crash, stop = r["failover"]["crash"], r["failover"]["stop"]
    assert crash["new_leader_max_s"] <= 5 and crash["not_rejoined"] == 0
    assert stop["new_leader_max_s"] <= 1 and stop["not_rejoined"] == 0
    assert r["failover"]["single_structure_again_s"] is not None
    merge = run(Model(gateways=300, islands=30, merge=True))["merge"]
    assert merge["structures_before"] == 2 and merge["single_structure_after_meet_s"] < 10


# -- a quiet link: heartbeats by unicast, multicast only on change ---------------------


def hgw(i: int, rank: int = 0, **kw: Any) -> StageMachine:
    """A gateway with a heartbeat socket (the current version)."""
    return gw(i, rank, heartbeat=f"10.0.{i // 256}.{i % 256}:5{i:03d}", **kw)


def multicasts(link: Link, since: float) -> list[tuple[str, float]]:
    return [(n, t) for n, a, t in link.log if isinstance(a, Announce | Goodbye) and t >= since]


def test_no_periodic_multicast_after_the_election() -> None:
    link = Link(*(hgw(i) for i in range(1, 11)))
    link.start()
    link.run(5)
    assert link.leaders() == [nid(10)]
    t0 = link.now
    link.run(60)
    assert multicasts(link, t0) == []  # nothing changed: the link only hears the stack's own upkeep
    beats = [(n, a) for n, a, t in link.log if isinstance(a, Heartbeat) and t >= t0]
    per_node = {n: sum(1 for m, _ in beats if m == n) for n in link.m}
    assert all(55 <= c <= 61 for c in per_node.values()), per_node  # one round a second
    assert all(len(a.to) == 9 for _, a in beats)  # to every other member, by unicast
    assert link.leaders() == [nid(10)]


def test_a_lone_gateway_sends_nothing_at_all() -> None:
    link = Link(hgw(1))
    link.start()
    link.run(3)
    t0 = link.now
    link.run(60)
    assert [a for _, a, t in link.log if t >= t0] == []
    assert link.m[nid(1)].next_deadline() == float("inf")


def test_changes_are_multicast_once_and_heartbeat_at_once() -> None:
    link = Link(hgw(1), hgw(2), hgw(3))
    link.start()
    link.run(5)
    t0 = link.now
    acts = link.feed(nid(3), Stopping())  # a clean exit: goodbye, the next claims on it
    assert of(acts, Goodbye)
    [(who, _)] = link.became_leader(since=t0)
    claim = [a for n, a, t in link.log if n == who and t >= t0 and isinstance(a, Announce)]
    assert len(claim) == 1 and claim[0].info.state.leading  # one multicast of the change …
    assert claim[0].to == (link.m[nid(1)].settings.heartbeat,)  # … and a heartbeat to the island
    link.run(30)
    assert multicasts(link, t0 + 2) == []


def test_heartbeats_alone_keep_the_island_alive() -> None:
    link = Link(hgw(1), hgw(2), hgw(3))
    link.start()
    link.run(5)
    link.multicast_lost = True  # e.g. a Wi-Fi that drops multicast: unicast still works
    t0 = link.now
    link.run(60)
    assert link.became_leader(since=t0) == [] and link.leaders() == [nid(3)]
    assert all(len(m.island.peers) == 2 for m in link.m.values())


def test_missed_heartbeats_are_a_crash_and_the_next_takes_over() -> None:
    link = Link(hgw(1), hgw(2), hgw(3))
    link.start()
    link.run(5)
    t0 = link.now
    link.down.add(nid(3))  # kill -9: no goodbye, its heartbeats stop
    link.run(6, step=0.01)
    [(who, when)] = link.became_leader(since=t0)
    s = link.m[nid(2)].settings
    assert who == nid(2)
    assert s.expiry - s.announce_interval - 0.02 <= when - t0 <= s.expiry + 0.02
    # the claim, and the other follower's new `leader`: each change multicast once
    assert sorted(n for n, _ in multicasts(link, t0)) == [nid(1), nid(2)]


def test_a_healed_partition_is_found_by_probing_lost_peers() -> None:
    link = Link(*(hgw(i) for i in range(1, 7)))
    link.start()
    link.run(5)
    link.group = {nid(i): 1 for i in (1, 2, 3)}
    link.run(10)
    assert link.leaders() == [nid(3), nid(6)]
    link.group = {}  # healed; nobody multicasts again on its own
    s = link.m[nid(1)].settings
    link.run(s.probe_interval + 1)
    assert link.leaders() == [nid(6)]
    assert all(len(m.island.peers) == 5 for m in link.m.values())


def test_an_older_gateway_on_the_link_brings_back_periodic_multicast() -> None:
    link = Link(hgw(1), hgw(2), gw(3))  # node 3 predates heartbeats: it multicasts every second
    link.start()
    link.run(5)
    assert link.leaders() == [nid(3)]
    t0 = link.now
    link.run(10)
    per_node = {n: sum(1 for m, _ in multicasts(link, t0) if m == n) for n in link.m}
    assert all(9 <= c <= 11 for c in per_node.values()), per_node  # as loud as before, not louder
    assert link.became_leader(since=t0) == []
    link.feed(nid(3), Stopping())
    t1 = link.now
    link.run(3)
    assert link.leaders() == [nid(2)]
    link.run(10)
    assert multicasts(link, t1 + 2) == []  # the old one gone: quiet again


def test_heartbeat_wire_round_trip_and_authentication() -> None:
    from z2z.core.security import Codec
    from z2z.core.wire.gateways import decode_heartbeat, encode_heartbeat

    info = replace(ANN, heartbeat="10.0.0.1:5000")
    public, private = Codec("z2z"), Codec("z2z", b"k" * 32)
    assert decode_heartbeat(encode_heartbeat(info, public), public) == (info, False)
    assert decode_heartbeat(encode_heartbeat(info, private), private) == (info, False)
    assert decode_heartbeat(encode_heartbeat(info, private, bye=True), private) == (info, True)
    sealed = encode_heartbeat(info, private)
    assert len(sealed) < 400
    with pytest.raises(WireError) as exc:
        decode_heartbeat(encode_heartbeat(info, public), private)  # a stranger without the secret
    assert exc.value.reason == "bad-auth"
    with pytest.raises(WireError):
        decode_heartbeat(sealed, Codec("z2z", b"j" * 32))  # another network
    forged = sealed.replace(b'"leader"', b'"leader"', 1).replace(b"10.0.0.1:5000", b"10.0.0.9:5000")
    with pytest.raises(WireError):
        decode_heartbeat(forged, private)
    for bad in (b"", b"[]", b"{", b'{"v":1}', b"x" * 2000, b'{"v":"1"}', b"[" * 5000):
        with pytest.raises(WireError):
            decode_heartbeat(bad, public)
    assert from_txt(to_txt(info)).heartbeat == "10.0.0.1:5000"
    assert "hb" not in to_txt(ANN)  # older gateways' TXT is unchanged
    with pytest.raises(WireError):
        from_txt({**to_txt(info), "hb": "nonsense"})


def test_a_clean_exit_hands_over_by_unicast_goodbye_too() -> None:
    link = Link(hgw(1), hgw(2), hgw(3))
    link.start()
    link.run(5)
    link.multicast_lost = True  # the mDNS goodbye is lost: the unicast one still arrives
    t0 = link.now
    [bye] = of(link.feed(nid(3), Stopping()), Goodbye)
    assert bye.info is not None and bye.info.state is State.LEADER  # who left, as it was
    assert sorted(bye.to) == sorted(link.m[nid(i)].settings.heartbeat for i in (1, 2))
    assert link.became_leader(since=t0) == [(nid(2), t0)]
    assert nid(3) not in link.m[nid(1)].island.lost  # left on purpose: not probed
