"""Deterministic discrete-event simulator of island election and the leaders' DHT, at scale.

Run from the repository root:
``.venv/bin/python -m bench.simulate --gateways 10000 --islands 1000 [--start burst|rate] [--json]``

It drives the very `z2z.core.stages.StageMachine` the gateways run, one per simulated
gateway, with the default `StageSettings` timers, and plays the runtime's part:
it carries every action out against a model of the network and feeds the
resulting events back.  Same seed, same numbers.

What is modelled
----------------
* **Islands.** Gateway ``g`` sits in island ``g mod islands``.  A link
  announcement (`Announce`, `Goodbye`) reaches every other live gateway of the
  island after ``--link-latency`` (1 ms), without loss.  Bytes of one
  announcement: 150 B of mDNS (header, PTR, SRV, A) plus the TXT as encoded by
  `z2z.core.stages.to_txt`.
* **Starts.** ``burst``: every gateway starts at a uniform time in
  ``[0, --jitter]`` (0.5 s).  ``rate``: one at a time, ``--rate`` per second in a
  random order (1000/s, as in Lee et al., "0 to 10k in 20 seconds", ICC 2011).
* **Rendezvous.** One shared store (an OpenDHT REST proxy).  Each request takes
  one WAN round trip drawn uniformly from ``[--wan-min, --wan-max]`` (20–80 ms);
  a put is stored half-way.  A put costs 2 messages of 4/3·record + 150 B
  (base64 in JSON over HTTP, the proxy echoes the value); a get costs a
  150 B request and a reply of 320 B per live record.  The rendezvous never
  fails or slows down under load unless a scenario takes it away.
* **The leaders' DHT (Kademlia-like, OpenDHT).** `StartDht` starts a node at
  once.  Joining (`StartDht` with contacts, `Bootstrap`, `JoinStructure`) needs
  one running contact: a ping round trip, then ``ceil(log2(n + 1))`` lookup
  rounds of one WAN round trip each, ``n`` the size of the component joined; α = 3
  parallel requests per round, each request and reply 200 B.  If no contact
  runs yet the join waits for the first one to start (OpenDHT re-bootstraps
  on its own).  When the join completes, both the newcomer and its contact
  report `DhtStatus` with peers.  A DHT put or get costs a lookup (same
  rounds) plus 2·k (k = 8) store messages for a put; a get returns the
  records of every node in the reader's connected component.  Components
  are tracked exactly (union–find over DHT node lifetimes): two components
  become one when one node completes a join into the other (OpenDHT spreads
  routing tables from there); a stopped or crashed node's component keeps its
  other members connected (their routing tables know more than one path).
  Every 5 s each DHT node reports `DhtStatus` with 3 random live members of
  its component (the runtime's periodic node-info poll).
* **Gateways.** Node ids random (seeded), ranks all 0 unless ``--ranks``,
  default `StageSettings` timers.
* **Services.** Only to count what merges cost: each site has
  ``--services-per-site`` services of 600 B; every `BridgeVia` and
  `JoinStructure` re-puts them (counted as puts, not simulated further).

Note for comparisons: the leaders' DHT has one node per *island* (1,000 for
``--islands 1000``), not one per gateway; Lee et al. built a 10,000-node DHT.

What is not modelled
--------------------
Packet loss, mDNS probing/rate limits and multicast storms; CPU time of the
gateways; the rendezvous's own load, per-key value limits and failures under
load; Kademlia routing-table maintenance, churn traffic, NAT, node failures
during a lookup, and value replication beyond the counted messages; the
services' own bridging (puts, listens, imports) beyond the republish counts;
clocks are perfect (``max_skew`` never matters).  Times are simulated seconds,
not measurements: they show what the stage rules and timers imply under this
model, nothing about real OpenDHT or python-zeroconf latencies.

Scenarios
---------
1. **Cold start**: all gateways start; reported: since when every island has
   exactly one leader, and since when all island leaders form a single
   structure — every leader STRUCTURED with the same structure id, no
   `JoinStructure` of theirs still in flight, and all their DHT nodes in one
   connected component — checked every 10 ms of simulated time; then whether
   that still holds ``--settle`` (5) s later.  Message and byte counts are
   taken at the moment the single structure is reached.
2. **Failover** (after the first structure settled): the rendezvous goes away
   (every gateway gets `RendezvousDown`), 2 s later ``--kills`` leaders crash
   (no goodbye) and ``--stops`` other leaders stop cleanly (default: a tenth
   of the islands each, all at the same instant).  Per island:
   time to the new leader's `BecomeLeader`, and to its being STRUCTURED again
   (bridging in the leaders' DHT, rejoined through the contacts the old leader
   announced on the link — there is no rendezvous any more).
3. **Merge** (``--merge``, a separate run): even islands use one rendezvous,
   odd islands another, so two structures form apart; ``--settle`` s after
   both formed, every gateway is pointed at the first rendezvous
   (`RendezvousDown` then `RendezvousUp`); reported: time from then to a
   single structure, and the messages that cost per leader.

Ticks: each gateway gets a `Tick` exactly at its `next_deadline()` (as the
runtime should schedule it), so crash detection is not blurred by a tick period.

Results are returned as a dict (`run`) and printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from z2z.core.stages import (
    TICK,
    Announce,
    BecomeLeader,
    Bootstrap,
    BridgeVia,
    DhtStatus,
    Goodbye,
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
)
from z2z.core.wire.gateways import encode_record, txt_size

MDNS_OVERHEAD = 150
HTTP_OVERHEAD = 150
RECORD_WIRE = 320
DHT_MSG = 200
ALPHA, K = 3, 8
DHT_STATUS_EVERY = 5.0
CHECK_EVERY = 0.01  # resolution of the reported times
SERVICE_BYTES = 600

# event kinds (ints: cheaper in the heap than enums)
START, TICKK, LINK, TO, PUT, READ, DREAD, JOINED, CHECK, CALL = range(10)


@dataclass
class Model:
    """Parameters of one simulation (see the module docstring)."""

    gateways: int = 10_000
    islands: int = 1_000
    seed: int = 1
    start: str = "burst"
    jitter: float = 0.5
    rate: float = 1000.0
    ranks: int = 1
    link_latency: float = 0.001
    wan_min: float = 0.020
    wan_max: float = 0.080
    services_per_site: int = 2
    kills: int = -1  # leaders crashed in the failover scenario (-1: a tenth of the islands)
    stops: int = -1  # leaders stopped cleanly (-1: a tenth of the islands)
    settle: float = 5.0
    horizon: float = 300.0
    merge: bool = False


@dataclass
class Counts:
    link_msgs: int = 0
    link_bytes: int = 0
    link_recv: int = 0
    link_recv_bytes: int = 0
    rdv_msgs: int = 0
    rdv_bytes: int = 0
    dht_msgs: int = 0
    dht_bytes: int = 0
    republish_puts: int = 0
    republish_bytes: int = 0


LEADER_KEYS = ("rdv_msgs", "rdv_bytes", "dht_msgs", "dht_bytes", "republish_puts")


@dataclass
class _Rendezvous:
    up: bool = True
    log: list[LeaderRecord] = field(default_factory=list)
    latest: dict[str, LeaderRecord] = field(default_factory=dict)


class Sim:
    """One simulated world: gateways, islands, rendezvous and the leaders' DHT."""

    def __init__(self, model: Model) -> None:
        self.model = mo = model
        self.rng = rng = random.Random(model.seed)
        n, k = mo.gateways, mo.islands
        ids: set[int] = set()
        while len(ids) < n:
            ids.add(rng.getrandbits(64) or 1)
        nodes = [f"{i:016x}" for i in sorted(ids, key=lambda _: rng.random())]
        self.island = [g % k for g in range(n)]
        self.members: list[list[int]] = [[] for _ in range(k)]
        for g in range(n):
            self.members[g % k].append(g)
        self.contact = [f"10.{g >> 16 & 255}.{g >> 8 & 255}.{g & 255}:4222" for g in range(n)]
        self.by_contact = {c: g for g, c in enumerate(self.contact)}
        self.m = [
            StageMachine(
                StageSettings(
                    node=nodes[g],
                    site=f"site{g % k}",
                    rank=rng.randrange(mo.ranks),
                    incarnation=1,
                    contact=self.contact[g],
                )
            )
            for g in range(n)
        ]
        self.alive = [True] * n
        self.sched = [math.inf] * n
        self.heap: list[tuple[float, int, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        # islands
        self.leaders: list[set[int]] = [set() for _ in range(k)]
        self.one_leader = 0  # islands with exactly one live leader
        # rendezvous (two for the merge scenario) and DHT
        self.rdvs = [_Rendezvous(), _Rendezvous()]
        self.rdv_of = [(g % k) % 2 if mo.merge else 0 for g in range(n)]
        self.cursor: dict[tuple[int, int], int] = {}
        self.session = [-1] * n  # DHT node lifetime id of each gateway (-1: none)
        self.parent: list[int] = []
        self.size: list[int] = []
        self.waiters: dict[int, list[tuple[int, int]]] = {}
        self.dht_nodes: list[int] = []  # gateways that ever started a DHT node
        self.joining: set[int] = set()  # a JoinStructure not completed yet
        self.dht_records: dict[int, tuple[int, LeaderRecord]] = {}  # g → (session, record)
        # measurements
        self.counts = [Counts() for _ in range(n)]
        self.dirty = True
        self.t_one_leader: float | None = None
        self.t_structure: float | None = None
        self.watch: dict[int, float] = {}  # island → failover start
        self.kind: dict[int, str] = {}
        self.t_lead: dict[int, float] = {}
        self.t_bridge: dict[int, float] = {}
        self.expect = 2 if mo.merge else 1  # structures the cold start should end with
        self.last_start = 0.0
        self.at_formation: dict[str, int] = {}
        self.events = 0
        self.transitions = 0
        self.claims = 0
        self.merges = 0

    # -- the event loop ------------------------------------------------------

    def push(self, t: float, kind: int, g: int = -1, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, g, payload))

    def wan(self) -> float:
        return self.rng.uniform(self.model.wan_min, self.model.wan_max)

    def run_until(self, end: float, stop_when: Any = None) -> None:
        heap = self.heap
        while heap and heap[0][0] <= end:
            t, _, kind, g, payload = heapq.heappop(heap)
            self.now = t
            self.events += 1
            if kind == LINK:
                self._link(g, payload, t)
            elif kind == TICKK:
                if self.sched[g] == t and self.alive[g]:
                    self.sched[g] = math.inf
                    self._feed(g, TICK, t)
            elif kind == TO:
                if self.alive[g]:
                    self._feed(g, payload, t)
                    self._watch_bridge(g, t)
            elif kind == PUT:
                rdv = self.rdvs[g]
                if rdv.up:
                    rdv.log.append(payload)
                    rdv.latest[payload.node] = payload
            elif kind == READ:
                self._read(g, payload, t)
            elif kind == DREAD:
                self._dht_read(g, payload, t)
            elif kind == JOINED:
                self._joined(g, payload, t)
            elif kind == START:
                self._feed(g, RendezvousUp(), t)
                self._feed(g, Started(), t)
            elif kind == CHECK:
                self._check(t)
                self.push(t + CHECK_EVERY, CHECK)
                if stop_when is not None and stop_when():
                    return
            elif kind == CALL:
                payload(t)

    def _feed(self, g: int, event: object, t: float) -> None:
        m = self.m[g]
        before = m.state
        acts = m.handle(event, t)
        if acts:
            self._apply(g, acts, t)
        if acts or m.state is not before or type(event) is not PeerAnnounced:
            if m.state is not before:
                self.transitions += 1
                self.dirty = True
            self._reschedule(g, t)

    def _reschedule(self, g: int, t: float) -> None:
        d = self.m[g].next_deadline()
        if d <= t:
            d = t + 1e-3
        if d != self.sched[g] and d < math.inf:
            self.sched[g] = d
            self.push(d, TICKK, g)

    def _link(self, src: int, payload: tuple[Any, int], t: float) -> None:
        event, size = payload
        c = self.counts
        for g in self.members[self.island[src]]:
            if g != src and self.alive[g]:
                c[g].link_recv += 1
                c[g].link_recv_bytes += size
                m = self.m[g]
                before = m.state
                acts = m.handle(event, t)
                if acts or m.state is not before or type(event) is PeerGoodbye or m.leaderless_since:
                    if acts:
                        self._apply(g, acts, t)
                    if m.state is not before:
                        self.transitions += 1
                        self.dirty = True
                    self._reschedule(g, t)

    # -- actions -------------------------------------------------------------

    def _apply(self, g: int, acts: list, t: float) -> None:
        c = self.counts[g]
        for a in acts:
            kind = type(a)
            if kind is Announce:
                size = MDNS_OVERHEAD + txt_size(a.info)
                c.link_msgs += 1
                c.link_bytes += size
                self.push(t + self.model.link_latency, LINK, g, (PeerAnnounced(a.info), size))
            elif kind is Goodbye:
                c.link_msgs += 1
                c.link_bytes += MDNS_OVERHEAD
                s = self.m[g].settings
                bye = PeerGoodbye(s.node, s.incarnation)
                self.push(t + self.model.link_latency, LINK, g, (bye, MDNS_OVERHEAD))
            elif kind is BecomeLeader:
                self._set_leader(g, True, t)
            elif kind is StepDown:
                self._set_leader(g, False, t)
            elif kind is Register:
                self._register(g, a, t)
            elif kind is ReadLeaders:
                self._read_request(g, a.store, t)
            elif kind is StartDht:
                self._start_dht(g, a, t)
            elif kind is Bootstrap:
                self._join(g, a.contacts, t)
            elif kind is JoinStructure:
                self.merges += 1
                self.joining.add(g)
                self.dirty = True
                self._republish(g, Store.DHT)
                self._join(g, a.contacts, t)
            elif kind is StopDht:
                self._stop_dht(g)
            elif kind is BridgeVia:
                self._republish(g, a.store)

    def _set_leader(self, g: int, leading: bool, t: float) -> None:
        isl = self.island[g]
        group = self.leaders[isl]
        was_one = len(group) == 1
        if leading:
            group.add(g)
            self.claims += 1
            for r in range(2):
                self.cursor.pop((g, r), None)  # a new leader reads the registry from scratch
            if isl in self.watch and isl not in self.t_lead and t >= self.watch[isl]:
                self.t_lead[isl] = t
        else:
            group.discard(g)
        self.one_leader += (len(group) == 1) - was_one
        self.dirty = True

    def _republish(self, g: int, store: Store) -> None:
        c, n = self.counts[g], self.model.services_per_site
        c.republish_puts += n
        c.republish_bytes += n * SERVICE_BYTES
        if store is Store.DHT:
            c.dht_msgs += n * self._put_msgs(g)

    # -- rendezvous ----------------------------------------------------------

    def _register(self, g: int, a: Register, t: float) -> None:
        c = self.counts[g]
        if a.store is Store.RENDEZVOUS:
            r = self.rdv_of[g]
            if not self.rdvs[r].up:
                return
            c.rdv_msgs += 2
            c.rdv_bytes += 2 * (len(encode_record(a.record)) * 4 // 3 + HTTP_OVERHEAD)
            self.push(t + self.wan() / 2, PUT, r, a.record)
        else:
            sess = self.session[g]
            if sess < 0:
                return
            c.dht_msgs += self._put_msgs(g)
            c.dht_bytes += self._put_msgs(g) * DHT_MSG
            self.dht_records[g] = (sess, a.record)

    def _put_msgs(self, g: int) -> int:
        return 2 * ALPHA * self._rounds(g) + 2 * K

    def _rounds(self, g: int) -> int:
        sess = self.session[g]
        n = self.size[self._find(sess)] if sess >= 0 else 1
        return max(1, math.ceil(math.log2(n + 1)))

    def _read_request(self, g: int, store: Store, t: float) -> None:
        c = self.counts[g]
        if store is Store.RENDEZVOUS:
            r = self.rdv_of[g]
            if not self.rdvs[r].up:
                return
            c.rdv_msgs += 2
            rtt = self.wan()
            self.push(t + rtt / 2, READ, g, (r, rtt / 2))
        elif self.session[g] >= 0:
            rounds = self._rounds(g)
            c.dht_msgs += 2 * ALPHA * rounds
            c.dht_bytes += 2 * ALPHA * rounds * DHT_MSG
            self.push(t + rounds * self.wan(), DREAD, g, self.session[g])

    def _read(self, g: int, payload: tuple[int, float], t: float) -> None:
        r, back = payload
        rdv = self.rdvs[r]
        if not rdv.up or not self.alive[g]:
            return
        start = self.cursor.get((g, r), 0)
        delta = tuple(rdv.log[start:])
        self.cursor[(g, r)] = len(rdv.log)
        self.counts[g].rdv_bytes += HTTP_OVERHEAD + RECORD_WIRE * len(rdv.latest)
        self.push(t + back, TO, g, LeadersRead(delta, Store.RENDEZVOUS))

    def _dht_read(self, g: int, sess: int, t: float) -> None:
        if self.session[g] != sess or not self.alive[g]:
            return
        root = self._find(sess)
        recs = tuple(rec for s, rec in self.dht_records.values() if self._find(s) == root)
        self.counts[g].dht_bytes += RECORD_WIRE * len(recs)
        self._feed(g, LeadersRead(recs, Store.DHT), t)

    # -- the leaders' DHT ----------------------------------------------------

    def _find(self, s: int) -> int:
        parent = self.parent
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            if self.size[ra] < self.size[rb]:
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.size[ra] += self.size[rb]
            self.dirty = True

    def _start_dht(self, g: int, a: StartDht, t: float) -> None:
        sid = len(self.parent)
        self.parent.append(sid)
        self.size.append(1)
        self.session[g] = sid
        self.dht_nodes.append(g)
        for joiner, jsess in self.waiters.pop(g, []):
            if self.session[joiner] == jsess and self.alive[joiner]:
                self._join(joiner, (self.contact[g],), t)
        if a.bootstrap:
            self._join(g, a.bootstrap, t)

    def _stop_dht(self, g: int) -> None:
        sid = self.session[g]
        self.joining.discard(g)
        if sid >= 0:
            self.session[g] = -1
            self.dht_records.pop(g, None)

    def _join(self, g: int, contacts: tuple[str, ...], t: float) -> None:
        sess = self.session[g]
        if sess < 0:
            return
        targets = [self.by_contact[c] for c in contacts if c in self.by_contact]
        running = [h for h in targets if self.alive[h] and self.session[h] >= 0 and h != g]
        if not running:
            for h in targets:
                if self.alive[h] and h != g:
                    self.waiters.setdefault(h, []).append((g, sess))
            return
        h = running[0]
        n = self.size[self._find(self.session[h])]
        rounds = max(1, math.ceil(math.log2(n + 1)))
        msgs = 2 + 2 * ALPHA * rounds
        self.counts[g].dht_msgs += msgs
        self.counts[g].dht_bytes += msgs * DHT_MSG
        done = t + sum(self.wan() for _ in range(rounds + 1))
        self.push(done, JOINED, g, (sess, h, self.session[h]))

    def _joined(self, g: int, payload: tuple[int, int, int], t: float) -> None:
        sess, h, hsess = payload
        if self.session[g] != sess or not self.alive[g]:
            return
        self.joining.discard(g)
        self.dirty = True
        if self.session[h] != hsess or not self.alive[h]:
            return  # the contact went away meanwhile: the rejoin timer will try others
        self._union(sess, hsess)
        n = self.size[self._find(sess)]
        self._feed(g, DhtStatus(min(n - 1, 3 * K), tuple(self._some_members(g, 3))), t)
        self._watch_bridge(g, t)
        if self.m[h].dht_peers == 0:
            self._feed(h, DhtStatus(1, (self.contact[g],)), t)
            self._watch_bridge(h, t)

    def _dht_status_round(self, t: float) -> None:
        """Every DHT node reports its peers now and then (the runtime polls node info)."""
        for g in range(self.model.gateways):
            sess = self.session[g]
            if sess >= 0 and self.alive[g] and self.m[g].dht_peers > 0:
                n = self.size[self._find(sess)]
                self._feed(g, DhtStatus(min(n - 1, 3 * K), tuple(self._some_members(g, 3))), t)
        self.push(t + DHT_STATUS_EVERY, CALL, payload=self._dht_status_round)

    def _some_members(self, g: int, want: int) -> list[str]:
        """Contacts of a few other live nodes of g's DHT component (what its routing table holds)."""
        root, out = self._find(self.session[g]), list[str]()
        for _ in range(8 * want):
            if len(out) >= want or not self.dht_nodes:
                break
            h = self.dht_nodes[self.rng.randrange(len(self.dht_nodes))]
            sess = self.session[h]
            if (
                h != g
                and sess >= 0
                and self.alive[h]
                and self._find(sess) == root
                and self.contact[h] not in out
            ):
                out.append(self.contact[h])
        return out

    # -- measurements --------------------------------------------------------

    def _check(self, t: float) -> None:
        """Keep `t_one_leader` / `t_structure`: since when every island has one leader, and
        since when all those leaders are STRUCTURED in `expect` structures (and DHT components)."""
        if not self.dirty:
            return
        self.dirty = False
        if self.one_leader != self.model.islands:
            self.t_one_leader = self.t_structure = None
            return
        if self.t_one_leader is None:
            self.t_one_leader = t
        structures, roots = set(), set()
        for group in self.leaders:
            g = next(iter(group))
            m = self.m[g]
            if m.state is not State.STRUCTURED or g in self.joining:
                self.t_structure = None
                return
            structures.add(m.structure)
            roots.add(self._find(self.session[g]))
        if len(structures) == len(roots) == self.expect:
            if self.t_structure is None:
                self.t_structure = t
        else:
            self.t_structure = None

    def _watch_bridge(self, g: int, t: float) -> None:
        isl = self.island[g]
        if isl not in self.watch or isl in self.t_bridge or t < self.watch[isl]:
            return
        if self.m[g].state is State.STRUCTURED and g in self.leaders[isl]:
            self.t_bridge[isl] = t

    def _crash(self, g: int, t: float) -> None:
        if self.m[g].state.leading:
            self._set_leader(g, False, t)
        self.alive[g] = False
        self._stop_dht(g)

    # -- scenarios -----------------------------------------------------------

    def cold_start(self) -> dict[str, Any]:
        """Start every gateway; run until the leaders form `expect` structures, then settle."""
        mo = self.model
        order = list(range(mo.gateways))
        self.rng.shuffle(order)
        for i, g in enumerate(order):
            t = self.rng.uniform(0, mo.jitter) if mo.start == "burst" else i / mo.rate
            self.last_start = max(self.last_start, t)
            self.push(t, START, g)
        self.push(0.0, CHECK)
        self.push(DHT_STATUS_EVERY, CALL, payload=self._dht_status_round)
        self.run_until(mo.horizon, stop_when=lambda: self.t_structure is not None)
        formed = self.t_structure
        self.at_formation = self.totals()
        if formed is not None:
            self.run_until(formed + mo.settle)
        return {
            "last_start_s": _r(self.last_start),
            "all_islands_one_leader_s": _r(self.t_one_leader),
            "single_structure_s" if self.expect == 1 else "two_structures_s": _r(formed),
            "stable_after_settle": formed is not None and self.t_structure == formed,
        }

    def failover(self) -> dict[str, Any]:
        mo = self.model
        t0 = self.now + 1.0
        self.push(t0, CALL, payload=self._rendezvous_down)
        t_kill = t0 + 2.0
        kills = mo.kills if mo.kills >= 0 else mo.islands // 10
        stops = mo.stops if mo.stops >= 0 else mo.islands // 10
        islands = self.rng.sample(range(mo.islands), min(mo.islands, kills + stops))
        for n, isl in enumerate(islands):
            self.kind[isl] = "crash" if n < kills else "stop"
            self.watch[isl] = t_kill
        self.push(t_kill, CALL, payload=self._kill)
        self.run_until(t_kill + 30.0, stop_when=lambda: len(self.t_bridge) == len(self.watch))
        out: dict[str, Any] = {}
        for what in ("crash", "stop"):
            group = [i for i in self.watch if self.kind[i] == what]
            lead = [self.t_lead[i] - self.watch[i] for i in group if i in self.t_lead]
            bridge = [self.t_bridge[i] - self.watch[i] for i in group if i in self.t_bridge]
            out[what] = {
                "trials": len(group),
                "new_leader_p50_s": _pct(lead, 50),
                "new_leader_p95_s": _pct(lead, 95),
                "new_leader_max_s": _r(max(lead)) if lead else None,
                "rejoined_p50_s": _pct(bridge, 50),
                "rejoined_p95_s": _pct(bridge, 95),
                "rejoined_max_s": _r(max(bridge)) if bridge else None,
                "not_rejoined": len(group) - len(bridge),
            }
        self.run_until(self.now + mo.settle, stop_when=lambda: self.t_structure is not None)
        again = self.t_structure
        out["single_structure_again_s"] = _r(again - t_kill) if again is not None else None
        return out

    def _rendezvous_down(self, t: float) -> None:
        for rdv in self.rdvs:
            rdv.up = False
        for g in range(self.model.gateways):
            if self.alive[g]:
                self._feed(g, RendezvousDown(), t)

    def _kill(self, t: float) -> None:
        for isl in self.watch:
            [g] = list(self.leaders[isl])
            if self.kind[isl] == "crash":
                self._crash(g, t)
            else:
                self._feed(g, Stopping(), t)
                self.alive[g] = False

    def meet(self) -> dict[str, Any]:
        """Merge scenario: both halves formed apart; now everyone uses rendezvous 0."""
        t = self.now
        before = self.totals()
        roots = {self._find(self.session[next(iter(gr))]) for gr in self.leaders if gr}
        structures = {self.m[next(iter(gr))].structure for gr in self.leaders if gr}
        self.rdv_of = [0] * self.model.gateways
        for g in range(self.model.gateways):
            if self.alive[g]:
                self._feed(g, RendezvousDown(), t)
                self._feed(g, RendezvousUp(), t)
        self.t_structure = None
        self.expect = 1
        self.dirty = True
        self.run_until(t + self.model.horizon, stop_when=lambda: self.t_structure is not None)
        done = self.t_structure
        after = self.totals()
        k = self.model.islands
        return {
            "structures_before": len(structures),
            "components_before": len(roots),
            "single_structure_after_meet_s": _r(done - t) if done is not None else None,
            "merges": self.merges,
            "per_leader": {key: round((after[key] - before[key]) / k, 1) for key in LEADER_KEYS},
        }

    def totals(self) -> dict[str, int]:
        return {key: sum(getattr(c, key) for c in self.counts) for key in Counts.__dataclass_fields__}

    def per_node(self, tot: dict[str, int]) -> dict[str, float]:
        """Link traffic per gateway (every gateway announces and listens)."""
        n = self.model.gateways
        return {
            key: round(tot[key] / n, 1) for key in ("link_msgs", "link_bytes", "link_recv", "link_recv_bytes")
        }

    def per_leader(self, tot: dict[str, int]) -> dict[str, float]:
        """Rendezvous and DHT traffic per island (only leaders register, read and join)."""
        k = self.model.islands
        return {key: round(tot[key] / k, 1) for key in LEADER_KEYS}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))
    return round(xs[i], 3)


def run(model: Model) -> dict[str, Any]:
    """Run the scenarios of `model`; a JSON-friendly dict of parameters and results."""
    started = time.perf_counter()
    sim = Sim(model)
    result: dict[str, Any] = {"model": asdict(model)}
    if model.merge:
        result["cold_start"] = sim.cold_start()
        result["merge"] = sim.meet()
    else:
        result["cold_start"] = sim.cold_start()
        result["cold_start"]["per_gateway"] = sim.per_node(sim.at_formation)
        result["cold_start"]["per_leader"] = sim.per_leader(sim.at_formation)
        result["cold_start"]["claims"] = sim.claims
        result["cold_start"]["merges"] = sim.merges
        result["failover"] = sim.failover()
    result["sim"] = {"events": sim.events, "wall_s": round(time.perf_counter() - started, 2)}
    return result


def _kb(x: float) -> str:
    return f"{x / 1000:.1f} kB"


def markdown(result: dict[str, Any]) -> str:
    """The figures as a Markdown table (for docs/performance.md)."""
    mo, cs = result["model"], result["cold_start"]
    how = f"jitter {mo['jitter']} s" if mo["start"] == "burst" else f"{mo['rate']:g}/s"
    rows = [
        ("gateways / islands", f"{mo['gateways']} / {mo['islands']}"),
        ("start", f"{mo['start']} ({how}), last start at {cs['last_start_s']} s"),
        ("every island has exactly one leader", f"{cs['all_islands_one_leader_s']} s"),
    ]
    if "single_structure_s" in cs:
        rows.append(("one structure of all island leaders", f"{cs['single_structure_s']} s"))
        rows.append((f"still one structure {mo['settle']:g} s later", str(cs["stable_after_settle"])))
    if "per_gateway" in cs:
        pg, pl = cs["per_gateway"], cs["per_leader"]
        sent = f"{pg['link_msgs']} ({_kb(pg['link_bytes'])})"
        heard = f"{pg['link_recv']} ({_kb(pg['link_recv_bytes'])})"
        rows += [
            ("until then, per gateway: link announcements sent / received", f"{sent} / {heard}"),
            ("until then, per leader: rendezvous messages", f"{pl['rdv_msgs']} ({_kb(pl['rdv_bytes'])})"),
            ("until then, per leader: leaders' DHT messages", f"{pl['dht_msgs']} ({_kb(pl['dht_bytes'])})"),
            ("until then, per leader: service re-puts (BridgeVia, JoinStructure)", f"{pl['republish_puts']}"),
            ("claims (BecomeLeader) / merges (JoinStructure)", f"{cs['claims']} / {cs['merges']}"),
        ]
    fo = result.get("failover")
    if fo:
        for what, label in (("crash", "leader crash (no goodbye)"), ("stop", "leader clean exit")):
            f = fo[what]
            lead = f"{f['new_leader_p50_s']} / {f['new_leader_p95_s']} / {f['new_leader_max_s']} s"
            back = f"{f['rejoined_p50_s']} / {f['rejoined_p95_s']} / {f['rejoined_max_s']} s"
            rows.append((f"{label}, no rendezvous, {f['trials']} islands: new leader p50 / p95 / max", lead))
            rows.append((f"{label}: new leader back in the structure p50 / p95 / max", back))
            if f["not_rejoined"]:
                rows.append((f"{label}: islands not back in the structure", str(f["not_rejoined"])))
        rows.append(
            (
                "one structure of all island leaders again, after the kills",
                f"{fo['single_structure_again_s']} s",
            )
        )
    mg = result.get("merge")
    if mg:
        pl = mg["per_leader"]
        rows += [
            ("two halves formed apart (two rendezvous)", f"{cs.get('two_structures_s')} s"),
            (
                "structures / DHT components before they meet",
                f"{mg['structures_before']} / {mg['components_before']}",
            ),
            ("one structure after they meet (one rendezvous)", f"{mg['single_structure_after_meet_s']} s"),
            ("merge, per leader: rendezvous messages", f"{pl['rdv_msgs']} ({_kb(pl['rdv_bytes'])})"),
            ("merge, per leader: leaders' DHT messages", f"{pl['dht_msgs']} ({_kb(pl['dht_bytes'])})"),
            ("merge, per leader: service re-puts", f"{pl['republish_puts']}"),
        ]
    rows.append(("simulator: events / wall time", f"{result['sim']['events']} / {result['sim']['wall_s']} s"))
    out = ["| quantity | simulated |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.split("\n")[0])
    d = Model()
    p.add_argument("--gateways", type=int, default=d.gateways)
    p.add_argument("--islands", type=int, default=d.islands)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--start", choices=["burst", "rate"], default=d.start)
    p.add_argument("--jitter", type=float, default=d.jitter)
    p.add_argument("--rate", type=float, default=d.rate)
    p.add_argument("--ranks", type=int, default=d.ranks, help="ranks drawn from range(RANKS)")
    p.add_argument("--link-latency", type=float, default=d.link_latency)
    p.add_argument("--wan-min", type=float, default=d.wan_min)
    p.add_argument("--wan-max", type=float, default=d.wan_max)
    p.add_argument("--services-per-site", type=int, default=d.services_per_site)
    p.add_argument("--kills", type=int, default=d.kills)
    p.add_argument("--stops", type=int, default=d.stops)
    p.add_argument("--merge", action="store_true", help="the merge scenario instead of cold start + failover")
    p.add_argument("--json", action="store_true", help="print the result dict as JSON too")
    a = p.parse_args(argv)
    if a.gateways < a.islands or a.islands < 1:
        p.error("need at least one gateway per island")
    model = Model(
        gateways=a.gateways, islands=a.islands, seed=a.seed, start=a.start, jitter=a.jitter, rate=a.rate,
        ranks=a.ranks, link_latency=a.link_latency, wan_min=a.wan_min, wan_max=a.wan_max,
        services_per_site=a.services_per_site, kills=a.kills, stops=a.stops, merge=a.merge,
    )  # fmt: skip
    result = run(model)
    print(markdown(result))
    if a.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
