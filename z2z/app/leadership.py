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
import secrets
from typing import TYPE_CHECKING, Any

from z2z.adapters.rendezvous import EmbeddedRendezvous, RendezvousError, parse_bootstrap
from z2z.adapters.rendezvous.base import Rendezvous
from z2z.core.records import Service
from z2z.core.stages import (
    TICK,
    Action,
    Announce,
    BecomeLeader,
    Bootstrap,
    BridgeVia,
    DhtStatus,
    Goodbye,
    JoinStructure,
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
from z2z.core.wire.gateways import check_txt, open_record, seal_record, sign_txt

if TYPE_CHECKING:
    from z2z.app.gateway import Gateway

log = logging.getLogger("z2z.app.leadership")

GATEWAY_TYPE = "_z2z._udp"
# Why a leader record failed to open (z2z.core.security), counted as leader-<reason>.
SEAL_REASONS = frozenset({"sealed", "not-sealed", "bad-seal", "bad-signature", "too-large"})
TICK_MAX = 0.25  # feed a Tick at least this often
DHT_STATUS_EVERY = 2.0
RENDEZVOUS_PROBE_EVERY = 3.0


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

    def __init__(self, gateway: Gateway, settings: StageSettings, *, dht_port: int, address: str) -> None:
        self.gateway = gateway
        self.machine = StageMachine(settings)
        self.dht_port = dht_port
        self.address = address  # our routable address on the link: the host record of the announcement
        self.dht: EmbeddedRendezvous | None = None
        self._ops: asyncio.Queue[Action] = asyncio.Queue()  # DHT actions, strictly in order
        self._tasks: list[asyncio.Task[None]] = []
        self._rendezvous_up: bool | None = None
        self._rendezvous_failing: set[str] = set()  # registry ops ("put", "get") failing now

    @property
    def settings(self) -> StageSettings:
        return self.machine.settings

    @property
    def instance(self) -> str:
        return instance_name(self.settings.node, self.settings.incarnation)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ticker()),
            loop.create_task(self._dht_worker()),
            loop.create_task(self._dht_status()),
            loop.create_task(self._probe_rendezvous()),
        ]
        self.handle(Started())
        self._outside_health(Store.RENDEZVOUS, True, "", "get")  # Gateway.start() just reached it

    async def stop(self) -> None:
        """Hand over at once: goodbye on the link, step down, stop the leaders' DHT node."""
        self.handle(Stopping())
        await self._ops.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.dht is not None:
            await self.dht.close()
            self.dht = None

    # -- events in -------------------------------------------------------------

    def handle(self, event: object) -> None:
        state, leader = self.machine.state, self.machine.leader()
        self._do(self.machine.handle(event, self.gateway.clock()))
        if self.machine.state is not state:  # one line per stage change
            log.info("stage %d: %s (was %s)", self.machine.state.stage, self.machine.state.value, state.value)
        if self.machine.leader() != leader and self.machine.leader() not in ("", self.settings.node):
            log.info("island leader is now %s", self.machine.leader())

    def peer_up(self, service: Service) -> None:
        try:
            txt = txt_dict(service.txt)
            check_txt(txt, self.gateway.codec)  # private network: only members' announcements
            info = from_txt(txt)
        except WireError as exc:
            log.debug("ignoring a _z2z._udp announcement (%s): %s", service.instance, exc)
            if exc.reason == "bad-auth":
                self.gateway.count_reject("bad-announcement")
            return
        self.handle(PeerAnnounced(info))

    def peer_down(self, instance: str) -> None:
        parsed = parse_instance(instance)
        if parsed is not None:
            self.handle(PeerGoodbye(*parsed))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(min(TICK_MAX, max(0.0, self.machine.next_deadline() - self.gateway.clock())))
            self.handle(TICK)

    # -- actions out -----------------------------------------------------------

    def _do(self, actions: list[Action]) -> None:
        gw = self.gateway
        for action in actions:
            if isinstance(action, Announce):
                signed = sign_txt(to_txt(action.info), gw.codec)
                txt = tuple(f"{k}={v}".encode() for k, v in signed.items())
                svc = Service(
                    GATEWAY_TYPE,
                    self.instance,
                    f"z2zgw-{self.settings.node}",
                    self.dht_port,
                    txt,
                    (self.address,),
                )
                gw.submit_link_op((GATEWAY_TYPE, self.instance), functools.partial(self._publish, svc))
            elif isinstance(action, Goodbye):
                gw.submit_link_op(
                    (GATEWAY_TYPE, self.instance), lambda: gw.link.withdraw(GATEWAY_TYPE, self.instance)
                )
            elif isinstance(action, BecomeLeader):
                log.info("leading the island of site %s", self.settings.site)
                gw.set_bridging(True)
            elif isinstance(action, StepDown):
                log.info("no longer leading (%s)", action.reason)
                gw.set_bridging(False)
            elif isinstance(action, Register):
                asyncio.get_running_loop().create_task(self._register(action))
            elif isinstance(action, ReadLeaders):
                asyncio.get_running_loop().create_task(self._read_leaders(action.store))
            else:  # StartDht, Bootstrap, JoinStructure, StopDht, BridgeVia: in order
                self._ops.put_nowait(action)

    async def _publish(self, svc: Service) -> None:
        await self.gateway.link.publish(svc)

    def _store(self, store: Store) -> Rendezvous | None:
        return self.gateway.rendezvous if store is Store.RENDEZVOUS else self.dht

    async def _register(self, action: Register) -> None:
        rv = self._store(action.store)
        if rv is None:
            return
        try:
            codec = self.gateway.codec  # sealed and signed in a private network
            await rv.put(codec.leaders_key(), secrets.randbits(63) | 1, seal_record(action.record, codec))
        except RendezvousError as exc:
            self._outside_health(action.store, False, str(exc), "put")
        else:
            self._outside_health(action.store, True, "", "put")

    async def _read_leaders(self, store: Store) -> None:
        rv = self._store(store)
        if rv is None:
            return
        try:
            values = await rv.get(self.gateway.codec.leaders_key())
        except RendezvousError as exc:
            self._outside_health(store, False, str(exc), "get")
            return
        self._outside_health(store, True, "", "get")
        records = []
        for value in values:
            try:
                record, signer = open_record(value.data, self.gateway.codec)
            except WireError as exc:
                known = exc.reason in SEAL_REASONS
                self.gateway.count_reject(f"leader-{exc.reason}" if known else "bad-leader-record")
                continue
            refused = self.gateway.trust_site(record.site, signer)
            if refused is not None:
                self.gateway.count_reject(f"leader-{refused}")
                continue
            records.append(record)
        self.handle(LeadersRead(tuple(records), store))

    async def _probe_rendezvous(self) -> None:
        """While the outside rendezvous is marked down, read the registry there now and then.

        Once structured, the machine stops using an absent rendezvous, so nothing
        else would notice it come back (a healed partition, a restarted proxy) and
        two structures formed apart would never meet there.
        """
        while True:
            await asyncio.sleep(RENDEZVOUS_PROBE_EVERY)
            if self._rendezvous_up is False:
                await self._read_leaders(Store.RENDEZVOUS)

    def _outside_health(self, store: Store, ok: bool, detail: str, op: str) -> None:
        """Up when neither registry puts nor gets fail (a proxy that lies to one must not flap it)."""
        if store is not Store.RENDEZVOUS:
            return
        if ok:
            self._rendezvous_failing.discard(op)
        else:
            self._rendezvous_failing.add(op)
        up = not self._rendezvous_failing
        if up == self._rendezvous_up:
            return
        self._rendezvous_up = up
        if not up:
            # The proxy adapter logs each failure condition itself (once); say what it means here.
            own_log = getattr(self.gateway.rendezvous, "trouble", None) is not None
            log.log(
                logging.INFO if own_log else logging.WARNING,
                "outside rendezvous unreachable for the leaders registry: %s",
                detail,
            )
        else:
            log.info("outside rendezvous reachable (leaders registry)")
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
        gw = self.gateway
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
            dht = EmbeddedRendezvous(
                parse_bootstrap(",".join(contacts)) if contacts else [],
                port=self.dht_port,
                network_id=action.network_id,
                bootstrap_timeout=2.0,
            )
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
                if gw.bridging_store is self.dht:
                    gw.reput_exports()
        elif isinstance(action, StopDht):
            if self.dht is not None:
                if gw.bridging_store is self.dht:
                    gw.bridge_via(gw.rendezvous, "rendezvous")
                await self.dht.close()
                self.dht = None
        elif isinstance(action, BridgeVia):
            target = self._store(action.store)
            if target is not None:
                gw.bridge_via(target, action.store.value)

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
        while True:
            await asyncio.sleep(DHT_STATUS_EVERY)
            if self.dht is not None:
                peers = await self._peers()
                log.debug("leaders' DHT node: %d good peers", peers)
                self.handle(DhtStatus(peers, ()))

    def status(self) -> dict[str, Any]:
        return self.machine.status()
