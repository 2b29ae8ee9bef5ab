"""`StageMachine`: one gateway's election and stage machine, events in, actions out.

Pure like `z2z.core.bridge`: no I/O, no clock, no randomness — the runtime passes
`now` (Unix seconds, the same clock as the bridge) into every call.  Each
`handle(event, now)` first *learns* from the event (the island's peers in
`Island`, leader records in `Registry`), then fires at most one rule of the
transition table in `z2z.core.stages.table`, then does the periodic duties (timers).
The rules, timers and messages are written down in docs/stages.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from z2z.core.stages.actions import (
    Action,
    Announce,
    BecomeLeader,
    Bootstrap,
    BridgeVia,
    Goodbye,
    Heartbeat,
    JoinStructure,
    ReadLeaders,
    Register,
    StartDht,
    StepDown,
    StopDht,
)
from z2z.core.stages.events import (
    DhtStatus,
    LeadersRead,
    PeerAnnounced,
    PeerGoodbye,
    RendezvousDown,
    RendezvousUp,
    Started,
    Stopping,
    Tick,
)
from z2z.core.stages.island import HINT_MEMORY, Heard, Island
from z2z.core.stages.registry import Registry
from z2z.core.stages.table import Rule, index
from z2z.core.wire.gateways import (
    MAX_CONTACTS,
    Announcement,
    LeaderRecord,
    State,
    Store,
    network_id,
    valid_contact,
    valid_node,
)

INF = float("inf")


@dataclass(frozen=True, slots=True)
class StageSettings:
    """Identity and timers of one gateway (defaults: docs/stages.md, "Timers")."""

    node: str  # 16 hex digits, persistent (state dir)
    site: str
    contact: str  # our DHT node's "host:port" as other leaders reach it (a routable address)
    network: str = "z2z"
    rank: int = 0  # higher is preferred as leader
    incarnation: int = 0  # must grow at every start (e.g. start time in ms)
    heartbeat: str = ""  # our heartbeat socket "host:port"; "" = none: multicast every interval (legacy)
    announce_interval: float = 1.0  # liveness: a heartbeat to each peer (legacy: a multicast announcement)
    expiry: float = 3.0  # a peer not heard for this long is dead
    probe_interval: float = 10.0  # heartbeats to peers lost without a goodbye (a healed partition)
    probe_for: float = 600.0  # … for this long after they were lost
    startup_wait: float = 1.5  # listen this long before claiming
    claim_grace: float = 1.0  # wait this long for a silent higher candidate
    answer_gap: float = 0.1  # at most one immediate answer to newcomers per gap
    register_interval: float = 20.0
    leader_ttl: int = 60
    max_skew: float = 30.0
    registry_poll: float = 2.0  # before joining a structure, and right after any change of structure
    registry_poll_structured: float = 30.0  # once structured the gap doubles up to this
    rejoin_interval: float = 5.0
    form_threshold: int = 1  # other leaders known before founding a structure
    max_contacts: int = 3  # contacts per bootstrap, and announced on the link (≤ wire.MAX_CONTACTS)

    def __post_init__(self) -> None:
        if not valid_node(self.node):
            raise ValueError(f"node id must be 16 lowercase hex digits, not {self.node!r}")
        if not valid_contact(self.contact):
            raise ValueError(f"contact must be host:port of our DHT node, not {self.contact!r}")
        if not 0 < self.announce_interval < self.expiry:
            raise ValueError("need 0 < announce_interval < expiry")
        if self.heartbeat and not valid_contact(self.heartbeat):
            raise ValueError(f"heartbeat must be host:port of our heartbeat socket, not {self.heartbeat!r}")


Guard = Callable[["StageMachine", Any, float], bool]
Effect = Callable[["StageMachine", Any, float], list[Action]]


class StageMachine:
    """Election in the island, then rendezvous, leaders' DHT and merges; see the module docstring."""

    def __init__(self, settings: StageSettings) -> None:
        s = self.settings = settings
        self.state = State.INIT
        self.previous = State.INIT
        self.island = Island(s.node, s.network, s.expiry)
        self.registry = Registry(s.node, s.network, s.max_skew)
        self.network_id = network_id(s.network)
        self.seq = 0
        self.structure = ""
        self.rendezvous_up = False
        self.dht_running = False
        self.dht_peers = 0
        self.via: Store | None = None
        self.started_at = 0.0
        self.leaderless_since: float | None = None
        self.last_rule: Rule | None = None
        self.stats: Counter[str] = Counter()
        self._contacts: tuple[str, ...] = ()  # other members of our structure, for announcements
        self._introduced: set[str] = set()
        self._next_announce = self._next_register = self._next_poll = self._next_rejoin = INF
        self._next_probe = -INF  # due at once when a peer is first lost
        self._published: Announcement | None = None  # what the link shows now (`_facts`)
        self._poll_gap = settings.registry_poll
        self._last_answer = -INF
        self._new_peer = False

    # -- the one entry point ---------------------------------------------------

    def handle(self, event: object, now: float) -> list[Action]:
        """Learn from `event`, fire at most one rule, do the duties that are due."""
        if self.state is State.STOPPED:
            return []
        learn = _LEARN.get(type(event))
        if learn is None:
            return []
        self._new_peer = False
        actions: list[Action] = []
        if learn(self, event, now):
            for rule, guard, effect in _RULES.get((self.state, type(event)), ()):
                if guard is None or guard(self, event, now):
                    self.previous = self.state
                    if len(rule.targets) == 1:
                        self.state = rule.targets[0]
                    actions = effect(self, event, now)
                    self.last_rule = rule
                    self.stats[f"rule:{rule.effect}"] += 1
                    break
            self._track_leaderless(now)
        if type(event) is Tick:
            actions += self._timers(now)
        elif (
            self._new_peer
            and self._may_answer(now)
            and not any(type(a) in (Announce, Heartbeat) for a in actions)
        ):
            self._last_answer = now  # a newcomer learns of us in one link latency, not one interval
            actions.append(self._liveness(now))
        return actions

    def next_deadline(self) -> float:
        """When the next `Tick` can change anything (inf: never; a time already past: tick now)."""
        if self.state in (State.INIT, State.STOPPED):
            return INF
        s = self.settings
        d = self.island.next_expiry()
        if self._legacy() or self.island.heartbeat_targets():
            d = min(d, self._next_announce)
        if s.heartbeat and self.island.lost:
            d = min(d, self._next_probe)
        if self.state is State.STARTING:
            d = min(d, self.started_at + s.startup_wait)
        elif self.state is State.FOLLOWER and self.leaderless_since is not None:
            d = min(d, max(self.leaderless_since, self._claim_deadline(self.leaderless_since)))
        elif self.state.leading and (self.rendezvous_up or self.state is State.STRUCTURED):
            d = min(d, self._next_register, self._next_poll)  # else neither has a store to use
        if self.state.leading and self.dht_running and self.dht_peers == 0:
            d = min(d, self._next_rejoin)
        return d

    # -- queries ---------------------------------------------------------------

    @property
    def key(self) -> tuple[int, str]:
        return (self.settings.rank, self.settings.node)

    def leader(self) -> str:
        """Node id of the island's leader as we see it ("" if none)."""
        if self.state.leading:
            return self.settings.node
        peer = self.island.leader()
        return peer.info.node if peer is not None else ""

    def status(self) -> dict[str, Any]:
        """What `z2z status` shows about the stages (JSON-friendly)."""
        return {
            "state": self.state.value,
            "stage": self.state.stage,
            "node": self.settings.node,
            "rank": self.settings.rank,
            "leader": self.leader(),
            "island": [
                {"node": p.info.node, "site": p.info.site, "rank": p.info.rank, "state": p.info.state.value}
                for p in sorted(self.island.peers.values(), key=lambda p: p.info.key, reverse=True)
            ],
            "rendezvous": self.rendezvous_up,
            "structure": self.structure,
            "structure_size": self.registry.count(self.structure, self.structure) if self.structure else 0,
            "dht_peers": self.dht_peers,
            "leaders_known": self.registry.leaders(),
            "bridging_via": self.via.value if self.via else None,
        }

    # -- learning (always, before the table) -----------------------------------

    def _learn_started(self, ev: Started, now: float) -> bool:
        if self.state is State.INIT:
            self.started_at = now
        return True

    def _learn_always(self, ev: object, now: float) -> bool:
        return True

    def _learn_tick(self, ev: Tick, now: float) -> bool:
        self.island.expire(now)
        return True

    def _learn_announced(self, ev: PeerAnnounced, now: float) -> bool:
        heard = self.island.hear(ev.info, now)
        if heard is Heard.STALE:
            return False
        if self.state.leading and ev.info.state.leading:
            self.registry.hear(ev.info, self.settings.leader_ttl, now)
        self._new_peer = heard is Heard.NEW
        return heard >= Heard.CHANGED

    def _learn_goodbye(self, ev: PeerGoodbye, now: float) -> bool:
        return self.island.goodbye(ev.node, ev.incarnation)

    def _learn_up(self, ev: RendezvousUp, now: float) -> bool:
        changed, self.rendezvous_up = not self.rendezvous_up, True
        return changed

    def _learn_down(self, ev: RendezvousDown, now: float) -> bool:
        changed, self.rendezvous_up = self.rendezvous_up, False
        return changed

    def _learn_read(self, ev: LeadersRead, now: float) -> bool:
        if not self.state.leading:
            return False  # a late answer after we stepped down
        for rec in ev.records:
            self.registry.add(rec, now)
        self.registry.purge(now)
        if not self._settled() and self._poll_gap > self.settings.registry_poll:
            self._poll_soon(now)  # the view may be partial: look again soon, not in 30 s
        return True

    def _learn_dht(self, ev: DhtStatus, now: float) -> bool:
        if not self.dht_running:
            return False
        self.dht_peers = max(0, ev.peers)
        mine = self.settings.contact
        fresh = tuple(c for c in ev.contacts if c != mine)[: self.settings.max_contacts]
        if fresh:
            self._contacts = fresh
        return True

    # -- guards ----------------------------------------------------------------

    def _g_leader_live(self, ev: object, now: float) -> bool:
        return self.island.leader() is not None

    def _g_window_over(self, ev: object, now: float) -> bool:
        return now >= self.started_at + self.settings.startup_wait

    def _g_window_over_may_claim(self, ev: object, now: float) -> bool:
        return self._g_window_over(ev, now) and self._g_may_claim(ev, now)

    def _g_may_claim(self, ev: object, now: float) -> bool:
        if self.island.leader() is not None:
            return False
        since = self.leaderless_since if self.leaderless_since is not None else now
        return now >= self._claim_deadline(since)

    def _claim_deadline(self, since: float) -> float:
        """When every live peer above us has had its chance to claim (then it is passed over)."""
        s = self.settings
        deadline = -INF
        for p in self.island.above(self.key):
            start = p.first_heard + s.startup_wait if p.info.state is State.STARTING else since
            deadline = max(deadline, start + s.claim_grace)
        return deadline

    def _g_higher_leader(self, ev: PeerAnnounced, now: float) -> bool:
        peer = self.island.leader()
        return peer is not None and peer.info.key > self.key

    def _g_can_form(self, ev: object, now: float) -> bool:
        return bool(self.registry.best()) or self.registry.leaders() >= self.settings.form_threshold

    def _g_has_dht_peers(self, ev: DhtStatus, now: float) -> bool:
        return self.dht_peers > 0

    def _g_larger_structure(self, ev: object, now: float) -> bool:
        return self.registry.best(self.structure) != self.structure

    def _g_smaller_structure_on_link(self, ev: PeerAnnounced, now: float) -> bool:
        info = ev.info
        return (
            info.state.leading
            and bool(info.structure)
            and info.structure != self.structure
            and info.structure not in self._introduced
            and bool(info.contact or info.contacts)
        )

    # -- effects ---------------------------------------------------------------

    def _do_start(self, ev: Started, now: float) -> list[Action]:
        return [self._announce(now)]

    def _do_follow(self, ev: object, now: float) -> list[Action]:
        return [self._announce(now)]

    def _do_claim(self, ev: object, now: float) -> list[Action]:
        """Entry rule: rejoin the island's structure if its last leader told us one, else
        interconnect if the rendezvous is up, else lead the island alone for now."""
        s = self.settings
        self.stats["claims"] += 1
        self.registry.clear()
        self._introduced.clear()
        self.leaderless_since = None
        hint = tuple(c for c in self.island.hint_contacts if c != s.contact)
        after: list[Action] = []
        if self.island.hint_structure and hint:
            self.state = State.FORMING
            after.append(self._start_dht(self.island.hint_structure, hint, now))
        elif self.rendezvous_up:
            self.state = State.INTERCONNECTED
            after.append(self._bridge_via(Store.RENDEZVOUS))
        else:
            self.state = State.LEADER
        if self.rendezvous_up:
            after += [Register(self._record(now), Store.RENDEZVOUS), ReadLeaders(Store.RENDEZVOUS)]
        self._next_register = now + s.register_interval
        self._poll_soon(now)
        return [BecomeLeader(), self._announce(now), *after]

    def _do_step_down(self, ev: object, now: float) -> list[Action]:
        self.stats["step_downs"] += 1
        return [*self._resign("higher-leader"), self._announce(now)]

    def _resign(self, reason: str) -> list[Action]:
        actions: list[Action] = [StepDown(reason)]
        if self.dht_running:
            actions.append(StopDht())
        self.dht_running, self.dht_peers, self.structure, self.via = False, 0, "", None
        self._contacts = ()
        self.registry.clear()
        self._next_register = self._next_poll = self._next_rejoin = INF
        return actions

    def _do_interconnect(self, ev: object, now: float) -> list[Action]:
        self._poll_soon(now)
        return [
            self._bridge_via(Store.RENDEZVOUS),
            Register(self._record(now), Store.RENDEZVOUS),
            ReadLeaders(Store.RENDEZVOUS),
        ]

    def _do_meet(self, ev: object, now: float) -> list[Action]:
        self._poll_soon(now)  # the rendezvous (maybe another one) is back: others may be arriving too
        return [Register(self._record(now), Store.RENDEZVOUS), ReadLeaders(Store.RENDEZVOUS)]

    def _do_nothing(self, ev: object, now: float) -> list[Action]:
        return []

    def _do_form(self, ev: object, now: float) -> list[Action]:
        """Join the best known structure; with none, the founder rule: the highest node id
        among unstructured leaders founds it, and its id is the structure id."""
        reg, me = self.registry, self.settings.node
        target = reg.best()
        if target:
            contacts = self._others(reg.contacts(target, self.settings.max_contacts + 1))
        else:
            target = reg.founder()
            contacts = () if target == me else self._others((reg.contact_of(target),))
        actions: list[Action] = [self._start_dht(target, contacts, now)]
        if self.rendezvous_up:
            actions.append(Register(self._record(now), Store.RENDEZVOUS))
        actions.append(self._announce(now))
        return actions

    def _do_structured(self, ev: object, now: float) -> list[Action]:
        self._poll_soon(now)
        return [
            self._bridge_via(Store.DHT),
            Register(self._record(now), Store.DHT),
            ReadLeaders(Store.DHT),
            self._announce(now),
        ]

    def _do_merge(self, ev: object, now: float) -> list[Action]:
        target = self.registry.best(self.structure)
        contacts = self.registry.contacts(target, self.settings.max_contacts + 1)
        if isinstance(ev, PeerAnnounced) and ev.info.structure == target:
            contacts = (*ev.info.contacts, *contacts)  # its other members: it may step down and stop
        contacts = self._others(tuple(dict.fromkeys(contacts)))
        self.stats["merges"] += 1
        self.structure, self._contacts = target, contacts
        self._poll_soon(now)
        actions: list[Action] = [JoinStructure(target, contacts)]
        actions += self._registers(now)
        actions.append(self._announce(now))
        return actions

    def _do_introduce(self, ev: PeerAnnounced, now: float) -> list[Action]:
        info = ev.info
        self._introduced.add(info.structure)
        contacts = self._others((info.contact, *info.contacts))
        return [Bootstrap(contacts)] if contacts else []

    def _do_stop(self, ev: object, now: float) -> list[Action]:
        actions = self._resign("stopping") if self.previous.leading else []
        if not self.settings.heartbeat:
            return [*actions, Goodbye()]
        info = replace(self._info(now), state=self.previous)  # who leaves (STOPPED is no wire state)
        return [*actions, Goodbye(info, self.island.heartbeat_targets())]

    # -- helpers ---------------------------------------------------------------

    def _others(self, contacts: tuple[str, ...]) -> tuple[str, ...]:
        mine = self.settings.contact
        return tuple(c for c in contacts if c and c != mine)[: self.settings.max_contacts]

    def _start_dht(self, structure: str, contacts: tuple[str, ...], now: float) -> StartDht:
        self.structure, self._contacts = structure, contacts
        self.dht_running, self.dht_peers = True, 0
        self._next_rejoin = now + self.settings.rejoin_interval
        return StartDht(self.network_id, contacts, structure)

    def _rejoin_contacts(self) -> tuple[str, ...]:
        """Everyone we know in our structure: registry first (fresh), then what we and our island heard."""
        known = self.registry.contacts(self.structure, HINT_MEMORY)
        hint = self.island.hint_contacts if self.island.hint_structure == self.structure else ()
        mine = self.settings.contact
        return tuple(dict.fromkeys(c for c in (*known, *self._contacts, *hint) if c and c != mine))[
            :HINT_MEMORY
        ]

    def _settled(self) -> bool:
        """No live leader record names a structure other than ours."""
        return all(st in ("", self.structure) for st in self.registry.members)

    def _poll_soon(self, now: float) -> None:
        """Our structure just changed: read the registry often again, then back off."""
        self._poll_gap = self.settings.registry_poll
        self._next_poll = now + self._poll_gap

    def _bridge_via(self, store: Store) -> BridgeVia:
        self.via = store
        return BridgeVia(store)

    def _record(self, now: float) -> LeaderRecord:
        s = self.settings
        size = self.registry.count(self.structure, self.structure) if self.structure else 0
        return LeaderRecord(s.network, s.site, s.node, s.contact, self.structure, size, now, s.leader_ttl)

    def _registers(self, now: float) -> list[Action]:
        rec = self._record(now)
        out: list[Action] = []
        if self.rendezvous_up:
            out.append(Register(rec, Store.RENDEZVOUS))
        if self.state is State.STRUCTURED:
            out.append(Register(rec, Store.DHT))
        return out

    def _announce(self, now: float) -> Announce:
        """Multicast what we are now (a change, or legacy liveness) and tell the island at once."""
        info = self._info(now)
        self._published = _facts(info)
        return Announce(info, self.island.heartbeat_targets() if self.settings.heartbeat else ())

    def _liveness(self, now: float) -> Announce | Heartbeat:
        """The periodic sign of life: a heartbeat to each peer, or a multicast if one is needed.

        Multicast only when what we announce changed since the link last heard it,
        or while an older gateway (no heartbeats) is live: it would expire us otherwise.
        """
        if self._legacy():
            return self._announce(now)
        info = self._info(now)
        if _facts(info) != self._published:
            self._published = _facts(info)
            return Announce(info, self.island.heartbeat_targets())
        return Heartbeat(info, self.island.heartbeat_targets())

    def _legacy(self) -> bool:
        return not self.settings.heartbeat or self.island.has_legacy_peer()

    def _info(self, now: float) -> Announcement:
        s = self.settings
        self.seq += 1
        self._next_announce = now + s.announce_interval
        leading = self.state.leading
        return Announcement(
            network=s.network,
            site=s.site,
            node=s.node,
            rank=s.rank,
            state=self.state,
            incarnation=s.incarnation,
            seq=self.seq,
            leader=self.leader(),
            structure=self.structure,
            size=self.registry.count(self.structure, self.structure) if self.structure else 0,
            contact=s.contact,
            contacts=self._contacts[:MAX_CONTACTS] if leading else (),
            heartbeat=s.heartbeat,
        )

    def _may_answer(self, now: float) -> bool:
        return self.state.leading and now - self._last_answer >= self.settings.answer_gap

    def _track_leaderless(self, now: float) -> None:
        if self.state is State.FOLLOWER and self.island.leader() is None:
            if self.leaderless_since is None:
                self.leaderless_since = now
        else:
            self.leaderless_since = None

    def _timers(self, now: float) -> list[Action]:
        s = self.settings
        out: list[Action] = []
        if now >= self._next_announce and (self._legacy() or self.island.heartbeat_targets()):
            out.append(self._liveness(now))
        if s.heartbeat and self.island.lost and now >= self._next_probe:
            self._next_probe = now + s.probe_interval
            self.island.forget_lost(now - s.probe_for)
            lost = tuple(hb for hb, _ in self.island.lost.values())
            if lost:
                out.append(Heartbeat(self._info(now), lost))
        if not self.state.leading:
            return out
        if now >= self._next_register:
            self._next_register = now + s.register_interval
            out += self._registers(now)
        if now >= self._next_poll:
            structured = self.state is State.STRUCTURED
            if structured and self._settled():  # back off: 2, 4, 8, … up to registry_poll_structured
                self._poll_gap = min(self._poll_gap * 2, s.registry_poll_structured)
            elif structured:  # another structure is about: a merge is due on one side or the other
                self._poll_gap = s.registry_poll
            self._next_poll = now + self._poll_gap
            if self.rendezvous_up:
                out.append(ReadLeaders(Store.RENDEZVOUS))
            if structured:
                out.append(ReadLeaders(Store.DHT))
        if self.dht_running and self.dht_peers == 0 and now >= self._next_rejoin:
            self._next_rejoin = now + s.rejoin_interval
            contacts = self._rejoin_contacts()
            if contacts:
                out.append(Bootstrap(contacts))
        return out


def _facts(info: Announcement) -> Announcement:
    """What a multicast announcement is re-sent for: all but `seq` and the informational `size`
    (which moves with every leader record in a big structure; heartbeats carry it)."""
    return replace(info, seq=0, size=0)


_LEARN: dict[type, Callable[[StageMachine, Any, float], bool]] = {
    Started: StageMachine._learn_started,
    Stopping: StageMachine._learn_always,
    Tick: StageMachine._learn_tick,
    PeerAnnounced: StageMachine._learn_announced,
    PeerGoodbye: StageMachine._learn_goodbye,
    RendezvousUp: StageMachine._learn_up,
    RendezvousDown: StageMachine._learn_down,
    LeadersRead: StageMachine._learn_read,
    DhtStatus: StageMachine._learn_dht,
}


def _resolve() -> dict[tuple[State, type], tuple[tuple[Rule, Guard | None, Effect], ...]]:
    """Bind the table's guard and effect names to methods (a typo fails at import)."""
    out = {}
    for key, rules in index().items():
        out[key] = tuple(
            (
                r,
                getattr(StageMachine, f"_g_{r.guard}") if r.guard else None,
                getattr(StageMachine, f"_do_{r.effect}"),
            )
            for r in rules
        )
    return out


_RULES = _resolve()
