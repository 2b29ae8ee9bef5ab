"""Carries out the stage machine's actions (`z2z.core.stages`) for one running gateway.

The machine decides; this module only does: it announces the gateway's
`_z2z._udp` service on the link, reads and writes the `leaders` key, runs the
leaders' embedded OpenDHT node, turns bridging on and off, and moves bridging
between the outside rendezvous and the leaders' DHT.  Whatever it observes
(peer announcements, registry contents, rendezvous health, DHT peers) goes back
to the machine as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from z2z.adapters.island import HeartbeatSocket
from z2z.adapters.link.base import LinkBackend
from z2z.adapters.rendezvous import RendezvousError, parse_bootstrap
from z2z.adapters.rendezvous.base import Rendezvous
from z2z.app.executors import TaskSet, stoppable_job
from z2z.app.health import StoreHealth
from z2z.core.records import Service
from z2z.core.security import Codec
from z2z.core.stages import (
    TICK,
    Action,
    Announce,
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
    StepDown,
    StopDht,
    Stopping,
    Store,
    WireError,
    from_txt,
    instance_name,
    to_txt,
)
from z2z.core.wire.gateways import (
    GATEWAY_TYPE,
    Announcement,
    check_txt,
    decode_heartbeat,
    encode_heartbeat,
    open_record,
    seal_record,
    sign_txt,
)

log = logging.getLogger(__name__)

# Why a leader record failed to open (z2z.core.security), counted as leader-<reason>.
SEAL_REASONS = frozenset({"sealed", "not-sealed", "bad-seal", "bad-signature", "too-large"})
TICK_MAX = 5.0  # feed a Tick at least this often (events wake the ticker too; this is a safety net)
DHT_STATUS_EVERY = 2.0
# A leader re-puts its record this often, and readers keep it this long (s).  Each re-put is
# a new value under the leaders key for OpenDHT's 10 minutes, so every registry read fetches
# about 600 / REGISTER_EVERY records per leader: 30 with the stage machine's 20 s default.
# A new leader, a change of structure or a takeover registers at once whatever this says.
REGISTER_EVERY = 150.0
LEADER_TTL = 450
RENDEZVOUS_PROBE_EVERY = 3.0


class LeadersDht(Rendezvous, Protocol):
    """The leaders' own DHT node: a rendezvous that can be pointed at more contacts."""

    def add_bootstrap(self, nodes: Sequence[tuple[str, int]]) -> None:
        """Ping these contacts (a connected OpenDHT node ignores `bootstrap`)."""


# (bootstrap contacts, port, network id) -> a node, not started yet
DhtFactory = Callable[[list[tuple[str, int]], int, int], LeadersDht]


class LeadershipControl(Protocol):
    """What the stage machine may do to its gateway; `z2z.app.bridging.Bridging` provides it.

    Narrow on purpose (like kademlia's protocol, which never sees its server):
    leadership can turn bridging on and off, move it to another store, put the
    gateway's own announcement on the link and report refusals, nothing more.
    """

    codec: Codec
    link: LinkBackend
    store: Rendezvous  # where bridging puts and listens now

    def set_bridging(self, active: bool) -> None: ...

    def bridge_via(self, store: Rendezvous, name: str) -> None: ...

    def reput_exports(self) -> None: ...

    def submit_link_op(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None: ...

    def count_reject(self, reason: str) -> None: ...

    def trust_site(self, site: str, signer: bytes | None) -> str | None: ...


def txt_dict(strings: tuple[bytes, ...]) -> dict[str, bytes]:
    """DNS-SD TXT strings as key → value (RFC 6763 §6.4: first occurrence wins)."""
    out: dict[str, bytes] = {}
    for s in strings:
        key, _, value = s.partition(b"=")
        name = key.decode("ascii", errors="replace").lower()
        out.setdefault(name, value)
    return out


def parse_instance(instance: str) -> tuple[str, int] | None:
    """(node, incarnation) from a `_z2z._udp` instance name, or None."""
    parts = instance.split("-")
    if len(parts) != 3 or parts[0] != "z2z" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


class Leadership:
    """The stage machine of one gateway, wired to its link, rendezvous and DHT."""

    def __init__(
        self,
        control: LeadershipControl,
        rendezvous: Rendezvous,
        settings: StageSettings,
        *,
        dht_factory: DhtFactory,
        dht_port: int,
        address: str,
        clock: Callable[[], float],
        trouble_logged: bool = False,
        heartbeat_port: int | None = 0,
    ) -> None:
        self.control = control
        self.rendezvous = rendezvous  # the outside rendezvous: the leaders registry lives there
        self.machine = StageMachine(settings)
        self.dht_factory = dht_factory
        self.dht_port = dht_port
        self.address = address  # our routable address on the link: the host record of the announcement
        self.clock = clock
        self._trouble_logged = trouble_logged  # the rendezvous adapter logs its failures itself
        self.dht: LeadersDht | None = None
        self._ops: asyncio.Queue[Action] = asyncio.Queue()  # DHT actions, strictly in order
        self._tasks = TaskSet("leadership")
        self._jobs: list[str] = []
        self._scheduler: AsyncIOScheduler | None = None
        self._wake = asyncio.Event()  # something happened: the next deadline may have moved
        # None: no heartbeat socket (announce by multicast every interval, as older versions do)
        self.heartbeat_port = heartbeat_port
        self.heartbeat: HeartbeatSocket | None = None
        # Health of the leaders registry on the outside rendezvous (None: not known yet).
        self.registry_health = StoreHealth(self._registry_changed, up=None)

    @property
    def settings(self) -> StageSettings:
        return self.machine.settings

    @property
    def instance(self) -> str:
        return instance_name(self.settings.node, self.settings.incarnation)

    # -- lifecycle -------------------------------------------------------------

    async def start(self, scheduler: AsyncIOScheduler) -> None:
        """Start the machine; periodic probes run as jobs of the gateway's `scheduler`.

        The deadline ticker is the one timer outside APScheduler: it sleeps until
        the machine's next deadline (at most `TICK_MAX`), which a fixed interval
        cannot express.
        """
        await self._open_heartbeat()
        self._tasks.spawn(self._ticker(), name="stage-ticker")
        self._tasks.spawn(self._dht_worker(), name="leaders-dht")
        self._scheduler = scheduler
        for job, every in (
            (self._dht_status, DHT_STATUS_EVERY),
            (self._probe_rendezvous, RENDEZVOUS_PROBE_EVERY),
        ):
            self._jobs.append(
                scheduler.add_job(stoppable_job(job), "interval", seconds=every, coalesce=True).id
            )
        self.handle(Started())
        self._registry_report(Store.RENDEZVOUS, True, "", "get")  # Gateway.start() just reached it

    async def stop(self) -> None:
        """Hand over at once: goodbye on the link, step down, stop the leaders' DHT node."""
        self.handle(Stopping())
        await self._ops.join()
        if self._scheduler is not None and self._scheduler.running:  # the gateway may have shut it down
            for job in self._jobs:
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(job)
        self._jobs = []
        await self._tasks.close()
        if self.heartbeat is not None:
            await self.heartbeat.close()
        if self.dht is not None:
            await self.dht.close()
            self.dht = None

    async def _open_heartbeat(self) -> None:
        """Bind the heartbeat socket and tell the machine its address (before `Started`)."""
        if self.heartbeat_port is None:
            return
        sock = HeartbeatSocket(self._heartbeat_in)
        try:
            contact = await sock.open(self.address, self.heartbeat_port)
        except OSError as exc:
            log.warning(
                "no heartbeat socket on %s port %d (%s): announcing on the link every second instead",
                self.address,
                self.heartbeat_port,
                exc,
            )
            return
        self.heartbeat = sock
        self.machine = StageMachine(replace(self.machine.settings, heartbeat=contact))
        log.debug("island heartbeats on %s", contact)

    # -- events in -------------------------------------------------------------

    def handle(self, event: object) -> None:
        state, leader = self.machine.state, self.machine.leader()
        self._do(self.machine.handle(event, self.clock()))
        if self.machine.state is not state:  # one line per stage change
            log.info("stage %d: %s (was %s)", self.machine.state.stage, self.machine.state.value, state.value)
        if self.machine.leader() != leader and self.machine.leader() not in ("", self.settings.node):
            log.info("island leader is now %s", self.machine.leader())
        self._wake.set()

    def _heartbeat_in(self, data: bytes, sender: str) -> None:
        try:
            info, bye = decode_heartbeat(data, self.control.codec)
        except WireError as exc:
            log.debug("ignoring a heartbeat from %s: %s", sender, exc)
            self.control.count_reject("bad-heartbeat" if exc.reason != "bad-auth" else "bad-announcement")
            return
        if bye:
            if info.network == self.settings.network:
                self.handle(PeerGoodbye(info.node, info.incarnation))
        else:
            self.handle(PeerAnnounced(info))

    def peer_up(self, service: Service) -> None:
        try:
            txt = txt_dict(service.txt)
            check_txt(txt, self.control.codec)  # private network: only members' announcements
            info = from_txt(txt)
        except WireError as exc:
            log.debug("ignoring a _z2z._udp announcement (%s): %s", service.instance, exc)
            if exc.reason == "bad-auth":
                self.control.count_reject("bad-announcement")
            return
        self.handle(PeerAnnounced(info))

    def peer_down(self, instance: str) -> None:
        parsed = parse_instance(instance)
        if parsed is not None:
            self.handle(PeerGoodbye(*parsed))

    async def _ticker(self) -> None:
        """Tick at the machine's next deadline; any event wakes it to look again.

        No fixed polling: a gateway with nothing due sleeps (up to `TICK_MAX`),
        which is what keeps an idle gateway's CPU near zero.
        """
        while True:
            self._wake.clear()
            delay = self.machine.next_deadline() - self.clock()
            if delay > 0:
                try:
                    async with asyncio.timeout(min(TICK_MAX, delay) if math.isfinite(delay) else TICK_MAX):
                        await self._wake.wait()
                    continue  # an event came first: its deadline may be earlier
                except TimeoutError:
                    pass
            self.handle(TICK)

    # -- actions out -----------------------------------------------------------

    def _do(self, actions: list[Action]) -> None:
        ctl = self.control
        for action in actions:
            if isinstance(action, Announce):
                signed = sign_txt(to_txt(action.info), ctl.codec)
                txt = tuple(f"{k}={v}".encode() for k, v in signed.items())
                svc = Service(
                    GATEWAY_TYPE,
                    self.instance,
                    f"z2zgw-{self.settings.node}",
                    self.dht_port,
                    txt,
                    (self.address,),
                )
                ctl.submit_link_op((GATEWAY_TYPE, self.instance), functools.partial(self._publish, svc))
                self._beat(action.info, action.to)
            elif isinstance(action, Heartbeat):
                self._beat(action.info, action.to)
            elif isinstance(action, Goodbye):
                ctl.submit_link_op(
                    (GATEWAY_TYPE, self.instance), lambda: ctl.link.withdraw(GATEWAY_TYPE, self.instance)
                )
                if action.info is not None:
                    self._beat(action.info, action.to, bye=True)
            elif isinstance(action, BecomeLeader):
                log.info("leading the island of site %s", self.settings.site)
                ctl.set_bridging(True)
            elif isinstance(action, StepDown):
                log.info("no longer leading (%s)", action.reason)
                ctl.set_bridging(False)
            elif isinstance(action, Register):
                self._tasks.spawn(self._register(action), name="register")
            elif isinstance(action, ReadLeaders):
                self._tasks.spawn(self._read_leaders(action.store), name="read-leaders")
            else:  # StartDht, Bootstrap, JoinStructure, StopDht, BridgeVia: in order
                self._ops.put_nowait(action)

    def _beat(self, info: Announcement, to: tuple[str, ...], *, bye: bool = False) -> None:
        if self.heartbeat is None or not to:
            return
        data = encode_heartbeat(info, self.control.codec, bye=bye)
        for contact in to:
            self.heartbeat.send(data, contact)

    async def _publish(self, svc: Service) -> None:
        await self.control.link.publish(svc)

    def _store(self, store: Store) -> Rendezvous | None:
        return self.rendezvous if store is Store.RENDEZVOUS else self.dht

    async def _register(self, action: Register) -> None:
        rv = self._store(action.store)
        if rv is None:
            return
        try:
            codec = self.control.codec  # sealed and signed in a private network
            await rv.put(codec.leaders_key(), secrets.randbits(63) | 1, seal_record(action.record, codec))
        except RendezvousError as exc:
            self._registry_report(action.store, False, str(exc), "put")
        else:
            self._registry_report(action.store, True, "", "put")

    async def _read_leaders(self, store: Store) -> None:
        rv = self._store(store)
        if rv is None:
            return
        try:
            values = await rv.get(self.control.codec.leaders_key())
        except RendezvousError as exc:
            self._registry_report(store, False, str(exc), "get")
            return
        self._registry_report(store, True, "", "get")
        records = []
        for value in values:
            try:
                record, signer = open_record(value.data, self.control.codec)
            except WireError as exc:
                known = exc.reason in SEAL_REASONS
                self.control.count_reject(f"leader-{exc.reason}" if known else "bad-leader-record")
                continue
            refused = self.control.trust_site(record.site, signer)
            if refused is not None:
                self.control.count_reject(f"leader-{refused}")
                continue
            records.append(record)
        self.handle(LeadersRead(tuple(records), store))

    async def _probe_rendezvous(self) -> None:
        """While the outside rendezvous is marked down, read the registry there (a periodic job).

        Once structured, the machine stops using an absent rendezvous, so nothing
        else would notice it come back (a healed partition, a restarted proxy) and
        two structures formed apart would never meet there.
        """
        if self.registry_health.up is False:
            await self._read_leaders(Store.RENDEZVOUS)

    def _registry_report(self, store: Store, ok: bool, detail: str, op: str) -> None:
        """Up when neither registry puts nor gets fail (a proxy that lies to one must not flap it)."""
        if store is Store.RENDEZVOUS:
            self.registry_health.report(op, ok, detail)

    def _registry_changed(self, up: bool, detail: str) -> None:
        if up:
            log.info("outside rendezvous reachable (leaders registry)")
        else:
            log.log(
                logging.INFO if self._trouble_logged else logging.WARNING,
                "outside rendezvous unreachable for the leaders registry: %s",
                detail,
            )
        self.handle(RendezvousUp() if up else RendezvousDown())

    # -- the leaders' DHT ------------------------------------------------------

    async def _dht_worker(self) -> None:
        while True:
            action = await self._ops.get()
            try:
                await self._dht_action(action)
            except Exception:
                log.exception("leaders' DHT action %s failed", type(action).__name__)
            finally:
                self._ops.task_done()

    async def _dht_action(self, action: Action) -> None:
        ctl = self.control
        if isinstance(action, StartDht):
            if self.dht is not None:
                await self.dht.close()
            contacts = [c for c in action.bootstrap if c]
            log.info(
                "starting the leaders' DHT (structure %s, network id %#x, bootstrap %s)",
                action.structure,
                action.network_id,
                ", ".join(contacts) or "none: founding",
            )
            nodes = parse_bootstrap(",".join(contacts)) if contacts else []
            dht = self.dht_factory(nodes, self.dht_port, action.network_id)
            try:
                await dht.start()
            except RendezvousError as exc:
                log.error("cannot start the leaders' DHT: %s", exc)
                return
            self.dht = dht
            self.handle(DhtStatus(await self._peers(), ()))
        elif isinstance(action, Bootstrap | JoinStructure):
            if self.dht is None:
                return
            if isinstance(action, Bootstrap):
                log.info("pinging leaders' DHT contacts %s", ", ".join(action.contacts) or "(none)")
            if action.contacts:
                self.dht.add_bootstrap(parse_bootstrap(",".join(action.contacts)))
            if isinstance(action, JoinStructure):
                log.info("joining structure %s via %s", action.structure, ", ".join(action.contacts))
                if ctl.store is self.dht:
                    ctl.reput_exports()
        elif isinstance(action, StopDht):
            if self.dht is not None:
                if ctl.store is self.dht:
                    ctl.bridge_via(self.rendezvous, "rendezvous")
                await self.dht.close()
                self.dht = None
        elif isinstance(action, BridgeVia):
            target = self._store(action.store)
            if target is not None:
                ctl.bridge_via(target, action.store.value)

    async def _peers(self) -> int:
        """Good peers of the leaders' DHT node, 0 when no peer answered just now.

        A count from an earlier lookup (``peers_stale``: this one got no answer in
        time) is reported as 0 on purpose: it makes the stage machine re-ping its
        structure's contacts, which is what reconnects a node cut off by a partition
        once the network heals (OpenDHT alone may wait minutes, or forever on the
        founder, which has no bootstrap node to go back to).
        """
        if self.dht is None:
            return 0
        try:
            info: dict[str, Any] = await self.dht.node_info()
        except RendezvousError:
            return 0
        if info.get("peers_stale"):
            return 0
        return int(info.get("peers", 0))

    async def _dht_status(self) -> None:
        """Feed the machine the leaders' DHT node's peer count (a periodic job)."""
        if self.dht is not None:
            peers = await self._peers()
            log.debug("leaders' DHT node: %d good peers", peers)
            self.handle(DhtStatus(peers, ()))

    def status(self) -> dict[str, Any]:
        return self.machine.status()

    def leaders(self) -> list[LeaderRecord]:
        """The other island leaders the registry shows now."""
        return list(self.machine.registry.records.values())
