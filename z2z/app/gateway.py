"""The gateway process: the composition root that builds the parts, starts them and stops them.

Nothing here decides anything.  `Gateway` builds the pure `Bridge`, the codec
of the (public or private) network, `Bridging` (which carries out the bridge's
actions, z2z.app.bridging), the `Leadership` that runs the stage machine
(z2z.app.leadership), the unicast DNS-SD front, the web fronts and one
APScheduler for every periodic job; it routes link events to them and takes
one `GatewayStatus` snapshot (z2z.app.status) for everything that reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from z2z.adapters.dns import DnsSdServer
from z2z.adapters.link.base import DynamicBrowsing, LinkBackend, LinkError, reload_subtypes
from z2z.adapters.link.net import all_addresses, contact_address
from z2z.adapters.rendezvous import EmbeddedRendezvous
from z2z.adapters.rendezvous.base import Rendezvous
from z2z.app import keys as key_store
from z2z.app import state as state_store
from z2z.app.bridging import Bridging, value_cap
from z2z.app.config import GatewayConfig, reload_diff
from z2z.app.dnsfront import dns_services, make_dns_server
from z2z.app.executors import stoppable_job
from z2z.app.leadership import LEADER_TTL, REGISTER_EVERY, LeadersDht, Leadership
from z2z.app.memwatch import MemWatch
from z2z.app.relay import Relay
from z2z.app.status import GatewayStatus, LeaderStatus, ReportPacer, ServiceStatus, StatusFile
from z2z.app.systemd import ServiceNotifier
from z2z.app.web import HttpServer, serve_fronts
from z2z.core.bridge import Bridge, BridgeSettings
from z2z.core.records import Service
from z2z.core.security import format_public_key, own_address_set
from z2z.core.stages import StageSettings
from z2z.core.typeindex import TypeIndex
from z2z.core.wire.gateways import GATEWAY_TYPE

log = logging.getLogger(__name__)


def embedded_dht(nodes: list[tuple[str, int]], port: int, network_id: int) -> LeadersDht:
    """The leaders' DHT node: an embedded OpenDHT node (the production `DhtFactory`)."""
    return EmbeddedRendezvous(nodes, port=port, network_id=network_id, bootstrap_timeout=2.0)


class Gateway:
    """One running gateway: a Bridge plus the adapters that feed and obey it.

    With `config.election` (the default) a `Leadership` runs the stage machine:
    the gateway bridges only while it leads its island, and bridging moves to the
    leaders' own DHT once they have formed one.  Without it, the gateway bridges
    from the start through the outside rendezvous.
    """

    def __init__(
        self,
        config: GatewayConfig,
        link: LinkBackend,
        rendezvous: Rendezvous,
        *,
        clock: Callable[[], float] = time.time,
        dht_factory: Callable[[list[tuple[str, int]], int, int], LeadersDht] = embedded_dht,
    ) -> None:
        self.config = config
        self.link = link
        self.rendezvous = rendezvous
        self.clock = clock
        self._state = state_store.load(config.state_dir)
        # Public, or private: sealed, signed values and a trust policy (z2z.core.security).
        self.codec, trust = key_store.open_network(config)
        self._own_addresses = own_address_set(all_addresses())  # never imported (address policy)
        self.bridge = Bridge(
            self._bridge_settings(config),
            last_seq=self._state.last_seq,
            active=not config.election,
            codec=self.codec,
            trust=trust,
        )
        trouble_logged = rendezvous.trouble is not None  # the adapter logs each failure condition itself
        self.bridging = Bridging(
            self.bridge,
            self.codec,
            link,
            rendezvous,
            TypeIndex(config.network, config.site, config.ttl, config.refresh, config.max_skew),
            site=config.site,
            state_dir=config.state_dir,
            flap_half_life=config.flap_half_life,
            clock=clock,
            trouble_logged=trouble_logged,
            observe=self._observe,
            changed=self._zone_changed,
        )
        self.bridging.set_value_cap(
            value_cap(config.max_services_per_site, config.refresh, config.ttl), config.refresh, config.ttl
        )
        # The relay through the gateways (private networks; None otherwise).
        self.relay = self.bridging.relay = Relay.build(config, self.bridging)
        if self.relay is not None:
            self.relay.changed = self._zone_changed
        self.bridging.anti_entropy_every = config.anti_entropy
        self.bridging.pacer.rate = config.announce_rate
        self.leadership: Leadership | None = None
        if config.election:
            address = contact_address(config.interface)
            port = config.dht_port
            self.leadership = Leadership(
                self.bridging,
                rendezvous,
                StageSettings(
                    node=self._state.node,
                    site=config.site,
                    contact=f"{address}:{port}" if ":" not in address else f"[{address}]:{port}",
                    network=config.network,
                    rank=config.rank,
                    incarnation=int(clock() * 1000),
                    max_skew=config.max_skew,
                    register_interval=REGISTER_EVERY,
                    leader_ttl=LEADER_TTL,
                ),
                dht_factory=dht_factory,
                dht_port=port,
                address=address,
                clock=clock,
                trouble_logged=trouble_logged,
            )
        self._scheduler: AsyncIOScheduler | None = None
        self._status_file: StatusFile | None = None
        self.dns: DnsSdServer | None = None
        self._zone_dirty = False
        self.started = asyncio.Event()
        self.notifier = ServiceNotifier()  # systemd readiness, status, watchdog (no-op elsewhere)
        self.metrics: Any = None  # z2z.app.metrics.Metrics with --metrics-listen
        self.web: list[HttpServer] = []  # --metrics-listen, --http-listen

    @property
    def node_id(self) -> str:
        return self._state.node

    def _bridge_settings(self, config: GatewayConfig) -> BridgeSettings:
        policy = config.policy()
        return BridgeSettings(
            site=config.site,
            network=config.network,
            node=self._state.node,
            types=policy.static_types(),
            ttl=config.ttl,
            refresh=config.refresh,
            max_skew=config.max_skew,
            flap_half_life=config.flap_half_life,
            instance_template=config.instance_template,
            host_template=config.host_template,
            policy=policy,
            rules=config.import_rules(self._own_addresses),
        )

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Reach the rendezvous, start browsing, then import what is already there."""
        await self.rendezvous.start()
        types = self.bridge.policy.static_types() + ((GATEWAY_TYPE,) if self.leadership else ())
        await self.link.start(types, self)
        self.bridging.start()  # after the link is up: a pushed value may be published at once
        if self.relay is not None:
            await self.relay.start()
        if self.bridge.policy.wildcard:
            if isinstance(self.link, DynamicBrowsing):
                await self.link.discover_types(self.bridging.type_seen)
            else:
                log.warning('this link backend cannot enumerate types: "*" bridges only the named types')
        if self.config.dns_listen:
            self.dns = make_dns_server(self.config, self.bridge)
            try:
                await self.dns.start()
            except OSError as exc:
                raise LinkError(f"cannot serve DNS on {self.config.dns_listen}: {exc.strerror}") from None
            log.info("serving DNS-SD for %s on %s", self.config.dns_domain, self.config.dns_listen)
        self.web, self.metrics = await serve_fronts(
            self.config.metrics_listen, self.config.http_listen, self.status
        )
        self._scheduler = self._schedule()
        self.bridging.tasks.spawn(self.bridging.anti_entropy(), name="anti-entropy")
        watch = MemWatch.from_env(self)  # Z2Z_MEMWATCH=SECONDS: what grows (a debugging aid)
        if watch is not None:
            self.bridging.tasks.spawn(watch[0].run(watch[1]), name="memwatch")
        log.info(
            "started for site %s in network %s (node %s), types %s",
            self.config.site,
            self.config.network,
            self.node_id,
            ", ".join(self.config.type) or "-",
        )
        if self.leadership is not None:
            await self.leadership.start(self._scheduler)
        else:
            self.bridging.log_bridging()
        self.started.set()
        self.notify_systemd()

    def _schedule(self) -> AsyncIOScheduler:
        """Every periodic job of the gateway, on one scheduler on this loop.

        Every job is a coroutine: AsyncIOScheduler runs plain functions in a
        thread pool, and the bridge must only ever be touched from the event loop.
        """
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())

        async def tick() -> None:
            self.bridging.tick()

        async def save_state() -> None:
            self._save_state()

        pacer = ReportPacer()

        async def report() -> None:  # one snapshot for both; paced at scale (ReportPacer)
            now = time.monotonic()
            if not pacer.due(now):
                return
            started = time.thread_time()
            status = self.status()
            self._write_status(status=status)
            self.notifier.update(*status.systemd_summary())
            pacer.done(now, time.thread_time() - started)

        for job, every in ((tick, 1.0), (save_state, 10.0), (report, 1.0)):
            scheduler.add_job(job, "interval", seconds=every, coalesce=True, max_instances=1, id=job.__name__)
        # Jitter on the full gets: gateways started together must not hit the DHT in step.
        # Two instances: a get slower than the interval (a slow rendezvous) makes the
        # second return at once instead of apscheduler warning at every round.
        every = self.config.anti_entropy
        scheduler.add_job(
            stoppable_job(self.bridging.anti_entropy_job),
            "interval",
            seconds=every,
            coalesce=True,
            max_instances=2,
            id="anti_entropy",
            jitter=every / 10,
        )
        watchdog = self.notifier.watchdog_interval
        if watchdog is not None:  # a blocked loop misses its ping and systemd restarts us
            scheduler.add_job(self.notifier.ping_watchdog, "interval", seconds=watchdog, id="watchdog")
            self.notifier.ping_watchdog()
        scheduler.start()
        return scheduler

    def _observe(self, op: str, store: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(op, store, seconds)

    async def stop(self, timeout: float = 3.0) -> None:
        """Clean stop: goodbyes for imports; tombstones for exports unless a follower takes over."""
        self.notifier.stopping()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        successor = self.leadership is not None and bool(self.leadership.machine.island.peers)
        if not successor:
            self.bridging.execute(self.bridge.shutdown(self.clock()))
        deadline = time.monotonic() + timeout
        # Tombstones go out through the store bridging uses now (perhaps the leaders'
        # DHT), before leadership stops that store.
        if not await self.bridging.stop(timeout):
            log.warning("could not deliver every tombstone before stopping")
        if self.leadership is not None:
            try:  # goodbye on the link: a follower takes over at once
                await asyncio.wait_for(self.leadership.stop(), timeout)
            except TimeoutError:
                log.warning("the leaders' DHT node did not stop within %g s", timeout)
        await self.bridging.close(max(0.1, deadline - time.monotonic()))
        if self.relay is not None:
            await self.relay.close()
        if self.dns is not None:
            await self.dns.close()
        for server in self.web:
            await server.close()
        await self._close_adapters(timeout)
        self._save_state()
        self._write_status(stopped=True)
        log.info("stopped")

    async def _close_adapters(self, timeout: float) -> None:
        """Close the link, then the rendezvous (at most `timeout`); a failure is logged, the stop goes on."""
        try:
            await self.link.close()  # unbounded: it sends the last goodbyes
        except Exception as exc:  # the process is stopping: say what failed, stop the rest anyway
            log.warning("closing the link failed: %s", exc or type(exc).__name__)
        try:
            await asyncio.wait_for(self.rendezvous.close(), timeout)
        except Exception as exc:
            log.warning("closing the rendezvous failed: %s", exc or type(exc).__name__)

    def reload(self, config: GatewayConfig) -> None:
        """Apply a re-read configuration (SIGHUP) without dropping what is still allowed.

        Keys outside `z2z.app.config.RELOADABLE` keep their running values; a change
        to one is logged as needing a restart.
        """
        config, changed, restart = reload_diff(self.config, config)
        for key in restart:
            log.warning("config: %s changed; restart z2z to apply it", key)
        self.notifier.reloading()
        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        if self._scheduler is not None and "anti-entropy" in changed:
            self._scheduler.reschedule_job(
                "anti_entropy",
                trigger="interval",
                seconds=config.anti_entropy,
                jitter=config.anti_entropy / 10,
            )
        self.bridging.flap_half_life = config.flap_half_life
        self.bridging.anti_entropy_every = config.anti_entropy
        self.bridging.pacer.rate = config.announce_rate
        self.bridging.execute(self.bridge.reconfigure(self._bridge_settings(config), self.clock()))
        self.bridging.set_value_cap(
            value_cap(config.max_services_per_site, config.refresh, config.ttl), config.refresh, config.ttl
        )
        self.bridging.forget_seen()  # a value refused under the old policy may be accepted now
        ti = self.bridging.type_index
        ti.ttl, ti.refresh, ti.max_skew = config.ttl, config.refresh, config.max_skew
        if self.started.is_set() and "subtypes" in changed:
            self.bridging.tasks.spawn(reload_subtypes(self.link, config.subtypes), name="subtypes")
        if self.started.is_set():  # newly allowed values come with a full get
            self.bridging.follow_types()
            self.bridging.tasks.spawn(self.bridging.anti_entropy(), name="anti-entropy")
        log.info("configuration reloaded (%s)", ", ".join(changed) or "no change")
        self.notifier.reloaded()

    # -- events from the link (LinkListener) ---------------------------------

    def service_up(self, service: Service) -> None:
        if service.type == GATEWAY_TYPE:
            if self.leadership is not None:
                self.leadership.peer_up(service)
            return
        self.bridging.local_up(service)

    def service_down(self, service_type: str, instance: str) -> None:
        if service_type == GATEWAY_TYPE:
            if self.leadership is not None:
                self.leadership.peer_down(instance)
            return
        self.bridging.local_down(service_type, instance)

    def service_refused(self, name: str, reason: str) -> None:
        self.bridging.local_refused(name, reason)

    # -- the unicast DNS-SD zone ---------------------------------------------

    def _zone_changed(self) -> None:
        """Local or remote news: rebuild the zone once per burst, on the next loop turn."""
        if self.dns is not None and not self._zone_dirty:
            self._zone_dirty = True
            asyncio.get_running_loop().call_soon(self._refresh_zone)

    def _refresh_zone(self) -> None:
        self._zone_dirty = False
        if self.dns is not None:
            services = dns_services(self.config, self.bridge)
            if self.relay is not None:  # relayed imports as the link shows them; held ones not at all
                services = self.relay.as_shown(services)
            self.dns.zone.update(services)

    # -- state and status ----------------------------------------------------

    def _save_state(self) -> None:
        if self.bridge.seq != self._state.last_seq:
            self._state.last_seq = self.bridge.seq
            try:
                state_store.save(self.config.state_dir, self._state)
            except OSError as exc:
                log.error("%s", exc)

    def status(self) -> GatewayStatus:
        """A snapshot of what this gateway does now, for every front that reports it."""
        trouble = self.rendezvous.trouble  # the proxy's ConditionLog
        bridge, leadership = self.bridge, self.leadership
        site = self.config.site
        return GatewayStatus(
            site=site,
            network=self.config.network,
            node=self.node_id,
            pid=os.getpid(),
            time=self.clock(),
            bridging=bridge.active,
            bridging_via=self.bridging.via,
            rendezvous=self.config.rendezvous,
            rendezvous_ok=self.bridging.store_ok,
            rendezvous_failing=trouble.failing if trouble is not None else [],
            rendezvous_failures=dict(trouble.counts) if trouble is not None else {},
            exported=sorted(s.instance + "." + s.type for s in bridge.exports()),
            imported=sorted(f"{s.instance}.{s.type} (from {origin})" for origin, s in bridge.imports()),
            rejected=dict(bridge.stats.rejected),
            flapping=[f"{i}.{t}" for t, i in bridge.held()]
            + [f"{i}.{t} (from {origin})" for origin, t, i in bridge.held_imports()],
            private=self.codec.private,
            site_key=format_public_key(self.codec.public_key) if self.codec.public_key else None,
            filtered=bridge.filtered.counts(),
            types=self.bridging.types_status(),
            services=[ServiceStatus.of(s, "export", site) for s in bridge.exports()]
            + [ServiceStatus.of(s, "import", origin) for origin, s in bridge.imports()],
            stages=leadership.status() if leadership else None,
            leaders=[
                LeaderStatus(r.site, r.node, r.contact, r.structure)
                for r in (leadership.leaders() if leadership else ())
            ],
            answers_too_big=dict(self.bridging.answers_too_big),
            values_skipped_known=self.bridging.skipped_known,
            anti_entropy_full_gets=self.bridging.gate.full_gets,
            anti_entropy_skipped=self.bridging.gate.skipped,
            link_kernel_drops=int(getattr(self.link, "kernel_drops", 0)),
            over_quota=bridge.overflows.snapshot(),
            puts=bridge.stats.puts,
            flap_holds=bridge.stats.damped,
            relay=self.relay.status() if self.relay is not None else None,
        )

    def _write_status(self, stopped: bool = False, status: GatewayStatus | None = None) -> None:
        if self._status_file is None or self._status_file.state_dir != self.config.state_dir:
            self._status_file = StatusFile(self.config.state_dir)
        try:
            self._status_file.write(status or self.status(), stopped=stopped)
        except OSError as exc:
            log.debug("cannot write status: %s", exc)

    def notify_systemd(self) -> None:
        """READY=1 once bridging or following the island's leader; STATUS= a one-line summary."""
        self.notifier.update(*self.status().systemd_summary())
