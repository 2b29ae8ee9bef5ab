"""The gateway process: wires the pure core to the link and the rendezvous.

It owns the asyncio loop's view of the world: link callbacks and DHT values
become `Bridge` events, and the actions the bridge returns are carried out by
two small executors:

- puts go through `_PutQueue`: latest version per instance wins, failures are
  retried with backoff and jitter while the rendezvous is away, so nothing valid
  is lost and nothing stale is sent after something newer;
- link operations go through `_KeyedSerial`: operations on one service run in
  order, different services run concurrently (publishing waits for probing).

Periodic work (TTL expiry and refresh, anti-entropy `get`, saving state) runs as
APScheduler jobs on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any

import ifaddr
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from z2z.adapters.dns import DnsSdServer
from z2z.adapters.link.base import DynamicBrowsing, LinkBackend, LinkError
from z2z.adapters.rendezvous.base import DhtValue, ListenHandle, Rendezvous, RendezvousError
from z2z.app import keys as key_store
from z2z.app import state as state_store
from z2z.app.config import GatewayConfig
from z2z.app.dnsfront import dns_services, make_dns_server
from z2z.app.leadership import GATEWAY_TYPE, Leadership
from z2z.app.systemd import ServiceNotifier
from z2z.app.web import HttpServer, json_body, render_status_html
from z2z.core.bridge import Action, Bridge, BridgeSettings, Damped, Publish, Put, Reject, TrustNews, Withdraw
from z2z.core.records import Service, routable_addresses
from z2z.core.security import KeyEvent, SecurityError, format_public_key, own_address_set
from z2z.core.stages import StageSettings
from z2z.core.typeindex import INDEX_TYPE, TypeIndex, TypeIndexError
from z2z.core.typeindex import decode as decode_type_index

log = logging.getLogger("z2z")
STATUS_FILE = "status.json"


class _KeyedSerial:
    """Run coroutines one after another per key, concurrently across keys."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Task[None]] = {}

    def submit(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        previous = self._tails.get(key)

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            try:
                await work()
            except Exception:
                log.exception("link operation on %s failed", key)
            finally:
                if self._tails.get(key) is task:
                    del self._tails[key]

        task = asyncio.get_running_loop().create_task(run())
        self._tails[key] = task

    async def drain(self, timeout: float) -> None:
        tasks = list(self._tails.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


class _PutQueue:
    """Deliver puts to the rendezvous; newest version per instance wins; retry on failure."""

    def __init__(self, rendezvous: Rendezvous, on_state: Callable[[bool, str], None]) -> None:
        self.rendezvous = rendezvous  # may be switched (bridging moves to the leaders' DHT)
        self._pending: dict[tuple[str, str], Put] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self.backoff_max = 10.0
        self.failures = 0
        self._kicked = False
        self.observe: Callable[[float], None] | None = None  # put latency, for metrics

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, put: Put) -> None:
        self._pending[(put.service_type, put.instance)] = put
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        delay = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._kicked = False  # a `retry_now` from here on cuts the backoff after this batch
            batch = dict(self._pending)
            results = await asyncio.gather(
                *(self._put(p) for p in batch.values()),
                return_exceptions=True,
            )
            failed = False
            for (ikey, put), result in zip(batch.items(), results, strict=True):
                if isinstance(result, BaseException):
                    failed = True
                    self.failures += 1
                    self._on_state(False, f"{type(result).__name__}: {result}")
                elif self._pending.get(ikey) is put:
                    del self._pending[ikey]
            if failed:
                delay = min(self.backoff_max, max(0.5, delay * 2))
                await self._backoff(delay * random.uniform(0.5, 1.0))
                self._wake.set()
            else:
                if batch:
                    self._on_state(True, "")
                delay = 0.0
            if not self._pending:
                self._idle.set()
            else:
                self._wake.set()

    async def _put(self, put: Put) -> None:
        started = time.monotonic()
        await self.rendezvous.put(put.key, put.value_id, put.data)
        if self.observe is not None:
            self.observe(time.monotonic() - started)

    async def _backoff(self, seconds: float) -> None:
        """Sleep before retrying, unless `retry_now` says the rendezvous is back."""
        end = asyncio.get_running_loop().time() + seconds
        while not self._kicked and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)

    def retry_now(self) -> None:
        """The rendezvous answers again: deliver what is pending without waiting out the backoff."""
        self._kicked = True

    async def drain(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return not self._pending

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
    ) -> None:
        self.config = config
        self.link = link
        self.rendezvous = rendezvous
        self.bridging_store: Rendezvous = rendezvous
        self.bridging_via = "rendezvous"
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
        self._seen_types: set[str] = set()  # found on the link by the "*" type enumeration
        # Which types each site exports (z2z.core.typeindex), for import-types = ["*"].
        self.type_index = TypeIndex(config.network, config.site, config.ttl, config.refresh, config.max_skew)
        self._index_types: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.leadership: Leadership | None = None
        if config.election:
            address = contact_address(config.interface)
            self.leadership = Leadership(
                self,
                StageSettings(
                    node=self._state.node,
                    site=config.site,
                    contact=f"{address}:{config.dht_port}"
                    if ":" not in address
                    else f"[{address}]:{config.dht_port}",
                    network=config.network,
                    rank=config.rank,
                    incarnation=int(clock() * 1000),
                    max_skew=config.max_skew,
                ),
                dht_port=config.dht_port,
                address=address,
            )
        self._link_ops = _KeyedSerial()
        self._puts: _PutQueue | None = None
        self._listens: dict[str, ListenHandle] = {}  # imported type -> its listen on the bridging store
        self._scheduler: AsyncIOScheduler | None = None
        self._rendezvous_ok = True
        self._rendezvous_failing: dict[str, str] = {}  # "put"/"get" -> why it failed last
        self._anti_entropy_running = False
        self._anti_entropy_again = False
        self._logged_rejects: set[str] = set()
        self.dns: DnsSdServer | None = None
        self._dns_dirty = False
        self.started = asyncio.Event()
        self.stopping = False
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
        self._puts = _PutQueue(self.rendezvous, self._rendezvous_state)
        self._puts.observe = lambda seconds: self._observe("put", self.bridging_via, seconds)
        self._puts.start()
        types = self.bridge.policy.static_types() + ((GATEWAY_TYPE,) if self.leadership else ())
        await self.link.start(types, self)
        self._listen_all()  # after the link is up: a pushed value may be published at once
        if self.bridge.policy.wildcard:
            if isinstance(self.link, DynamicBrowsing):
                await self.link.discover_types(self.type_seen)
            else:
                log.warning('this link backend cannot enumerate types: "*" bridges only the named types')
        if self.config.dns_listen:
            self.dns = make_dns_server(self.config, self.bridge)
            try:
                await self.dns.start()
            except OSError as exc:
                raise LinkError(f"cannot serve DNS on {self.config.dns_listen}: {exc.strerror}") from None
            log.info("serving DNS-SD for %s on %s", self.config.dns_domain, self.config.dns_listen)
        await self._start_web()
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        # Every job is a coroutine: AsyncIOScheduler runs plain functions in a thread
        # pool, and the bridge must only ever be touched from the event loop.
        jobs = (
            (self._tick, 1.0),
            (self._anti_entropy_job, self.config.anti_entropy),
            (self._save_state_job, 10.0),
            (self._status_job, 1.0),
        )
        for job, every in jobs:
            # Jitter on the full gets: gateways started together must not hit the DHT in step.
            # Two instances: a get slower than the interval (a slow rendezvous) makes the
            # second return at once instead of apscheduler warning at every round.
            full_get = job == self._anti_entropy_job
            self._scheduler.add_job(
                job,
                "interval",
                seconds=every,
                coalesce=True,
                max_instances=2 if full_get else 1,
                id="anti_entropy" if full_get else job.__name__,
                jitter=every / 10 if full_get else None,
            )
        self._scheduler.start()
        asyncio.get_running_loop().create_task(self.anti_entropy())
        log.info(
            "started for site %s in network %s (node %s), types %s",
            self.config.site,
            self.config.network,
            self.node_id,
            ", ".join(self.config.type) or "-",
        )
        if self.leadership is not None:
            await self.leadership.start()
        else:
            self._log_bridging()
        self.started.set()
        self.notifier.start_watchdog()
        self._notify_service()

    async def _start_web(self) -> None:
        """Prometheus /metrics and the status page, each on its own listen address."""
        servers: list[tuple[str, str, dict[str, Any]]] = []
        if self.config.metrics_listen:
            from z2z.app.metrics import CONTENT_TYPE, Metrics

            metrics = self.metrics = Metrics(self)
            servers.append(
                (
                    "metrics",
                    self.config.metrics_listen,
                    {"/metrics": lambda: (CONTENT_TYPE, metrics.render())},
                )
            )
        if self.config.http_listen:

            def page() -> tuple[str, bytes]:
                return "text/html; charset=utf-8", render_status_html(self.status()).encode()

            servers.append(
                (
                    "status page",
                    self.config.http_listen,
                    {"/": page, "/index.html": page, "/status.json": lambda: json_body(self.status())},
                )
            )
        for what, listen, routes in servers:
            server = HttpServer(listen, routes)
            try:
                await server.start()
            except OSError as exc:
                raise LinkError(f"cannot serve the {what} on {listen}: {exc.strerror}") from None
            self.web.append(server)
            host, port = server.address
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log.info("serving the %s on http://%s/", what, shown)

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
            self._execute(self.bridge.shutdown(self.clock()))
        deadline = time.monotonic() + timeout
        # Tombstones go out through the store bridging uses now (perhaps the leaders'
        # DHT), before leadership stops that store.
        if self._puts is not None and not await self._puts.drain(timeout):
            log.warning("could not deliver every tombstone before stopping")
        self.stopping = True
        if self.leadership is not None:
            try:  # goodbye on the link: a follower takes over at once
                await asyncio.wait_for(self.leadership.stop(), timeout)
            except TimeoutError:
                log.warning("the leaders' DHT node did not stop within %g s", timeout)
        for handle in self._listens.values():
            handle.cancel()
        if self._puts is not None:
            await self._puts.close()
        await self._link_ops.drain(max(0.1, deadline - time.monotonic()))
        if self.dns is not None:
            await self.dns.close()
        for server in self.web:
            await server.close()
        with contextlib.suppress(Exception):
            await self.link.close()
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(self.rendezvous.close(), timeout)
        self._save_state()
        self.write_status(stopped=True)
        await self.notifier.close()
        log.info("stopped")

    # -- hooks for the stage machine (z2z.app.leadership) ------------------------

    def set_bridging(self, active: bool) -> None:
        self._execute(self.bridge.set_active(active, self.clock()))
        if active:
            self._log_bridging()

    def bridge_via(self, store: Rendezvous, name: str) -> None:
        """Move puts, listens and anti-entropy to `store`, and re-put every export there."""
        if store is self.bridging_store or self.stopping:
            return
        log.info("bridging via the %s from now on", "leaders' DHT" if name == "dht" else "outside rendezvous")
        for handle in self._listens.values():
            handle.cancel()
        self._listens = {}
        self.bridging_store, self.bridging_via = store, name
        assert self._puts is not None
        self._puts.rendezvous = store
        self._listen_all()
        self.reput_exports()
        asyncio.get_running_loop().create_task(self.anti_entropy())

    def reput_exports(self) -> None:
        self._execute(self.bridge.reput_all(self.clock()))

    def submit_link_op(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        self._link_ops.submit(key, work)

    def count_reject(self, reason: str) -> None:
        self.bridge.stats.rejected[reason] += 1

    def _log_bridging(self) -> None:
        p = self.bridge.policy
        if p.export_types == p.import_types:
            log.info("bridging %s for site %s", ", ".join(p.export_types), self.config.site)
        else:
            log.info(
                "bridging for site %s: export %s; import %s",
                self.config.site,
                ", ".join(p.export_types) or "nothing",
                ", ".join(p.import_types) or "nothing",
            )

    # -- the admin's controls ------------------------------------------------

    def type_seen(self, service_type: str) -> None:
        """The link announced a type (type enumeration, for ``"*"``): browse it, import it."""
        if service_type == GATEWAY_TYPE or service_type in self._seen_types:
            return
        policy = self.bridge.policy
        if not (policy.exports_type(service_type) or policy.imports_type(service_type)):
            if self.bridge.filtered.stopped("deny-types", ("type", service_type)):
                log.info("type %s seen on the link, not bridged (deny-types)", service_type)
            return
        self._seen_types.add(service_type)
        log.info("type %s seen on the link: bridging it", service_type)
        self._follow_types()

    def _follow_types(self) -> None:
        """Browse and listen to whatever the policy (and the types seen) now asks for."""
        policy = self.bridge.policy
        browse = [
            t
            for t in (*policy.static_types(), *sorted(self._seen_types | self._index_types))
            if policy.exports_type(t) or policy.imports_type(t)
        ]
        if isinstance(self.link, DynamicBrowsing):
            self._background(self.link.browse(browse))
        wanted = set(self._import_types())
        for t in set(self._listens) - wanted:
            self._listens.pop(t).cancel()
        added = wanted - set(self._listens)
        if added and not self.stopping:
            self._listen_all()
            self._background(self.anti_entropy())

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reload(self, config: GatewayConfig) -> None:
        """Apply a re-read configuration (SIGHUP) without dropping what is still allowed.

        Keys outside `z2z.app.config.RELOADABLE` keep their running values; a change
        to one is logged as needing a restart.
        """
        from dataclasses import replace

        from z2z.app.config import FIELDS, RELOADABLE

        fixed = {}
        for key in FIELDS:
            name = key.replace("-", "_")
            if key not in RELOADABLE and getattr(config, name) != getattr(self.config, name):
                log.warning("config: %s changed; restart z2z to apply it", key)
            if key not in RELOADABLE:
                fixed[name] = getattr(self.config, name)
        self.notifier.reloading()
        config = replace(config, **fixed)
        changed = sorted(
            k
            for k in FIELDS
            if getattr(config, k.replace("-", "_")) != getattr(self.config, k.replace("-", "_"))
        )
        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        if self._scheduler is not None and "anti-entropy" in changed:
            self._scheduler.reschedule_job(
                "anti_entropy",
                trigger="interval",
                seconds=config.anti_entropy,
                jitter=config.anti_entropy / 10,
            )
        self._execute(self.bridge.reconfigure(self._bridge_settings(config), self.clock()))
        ti = self.type_index
        ti.ttl, ti.refresh, ti.max_skew = config.ttl, config.refresh, config.max_skew
        if self._puts is not None:  # started: newly allowed values come with a full get
            self._follow_types()
            self._background(self.anti_entropy())
        log.info("configuration reloaded (%s)", ", ".join(changed) or "no change")
        self.notifier.reloaded()

    # -- events from the link (LinkListener) ---------------------------------

    def service_up(self, service: Service) -> None:
        if service.type == GATEWAY_TYPE:
            if self.leadership is not None:
                self.leadership.peer_up(service)
            return
        self._execute(self.bridge.local_up(service, self.clock()))

    def service_down(self, service_type: str, instance: str) -> None:
        if service_type == GATEWAY_TYPE:
            if self.leadership is not None:
                self.leadership.peer_down(instance)
            return
        self._execute(self.bridge.local_down(service_type, instance, self.clock()))

    def service_refused(self, name: str, reason: str) -> None:
        self.count_reject("bad-local-service")
        self._log_reject(Reject("bad-local-service", f"{name!r}: {reason}"))

    # -- events from the rendezvous ------------------------------------------

    def _import_types(self) -> list[str]:
        policy = self.bridge.policy
        types = list(policy.static_import_types())
        if policy.wildcard_import:  # "*": whatever this link shows or other sites export
            types += sorted(
                t
                for t in self._seen_types | self._index_types | set(policy.static_types())
                if t not in types and policy.imports_type(t)
            )
            types.append(INDEX_TYPE)
        return types

    def _listen_all(self) -> None:
        """Listen on every imported type's key in the bridging store (those not yet listened)."""
        store = self.bridging_store
        for t in self._import_types():
            if t not in self._listens:
                self._listens[t] = store.listen(self.bridge.key_for(t), self._listener_for(t))

    def _listener_for(self, service_type: str) -> Callable[[DhtValue, bool], None]:
        def on_value(value: DhtValue, expired: bool) -> None:
            if not expired:  # expiry is decided by the application TTL, not the DHT
                self._remote_value(service_type, value.data, self.clock())

        return on_value

    def _remote_value(self, service_type: str, data: bytes, now: float) -> None:
        if service_type != INDEX_TYPE:
            self._execute(self.bridge.remote_value(service_type, data, now))
            return
        key = self.bridge.key_for(INDEX_TYPE)
        try:
            opened = self.codec.open(data, key)
            if not self.codec.verify(opened):
                raise TypeIndexError("bad signature")
            if opened.signer is not None:  # private network: the site must trust that signer
                refused = self.trust_site(decode_type_index(opened.body).site, opened.signer)
                if refused is not None:
                    raise TypeIndexError(refused)
            new = self.type_index.receive(opened.body, now)
        except (TypeIndexError, SecurityError) as exc:
            self.count_reject("bad-type-index")
            log.debug("ignoring a type index entry: %s", exc)
            return
        new = [t for t in new if t not in self._index_types and self.bridge.policy.imports_type(t)]
        if new:
            log.info("other sites export %s: importing", ", ".join(new))
            self._index_types.update(new)
            self._follow_types()

    def _publish_type_index(self, now: float) -> None:
        """While bridging, keep this site's entry of the type index up to date."""
        if not self.bridge.active or self._puts is None:
            return
        body = self.type_index.due((s.type for s in self.bridge.exports()), now)
        if body is None:
            return
        key = self.bridge.key_for(INDEX_TYPE)
        try:
            data = self.codec.seal(body, key)
        except (ValueError, SecurityError) as exc:
            log.debug("cannot seal the type index entry: %s", exc)
            return
        self.bridge.seq = max(self.bridge.seq + 1, int(now * 1000))
        value_id = self.codec.value_id(self.config.site, INDEX_TYPE, "", self.bridge.seq)
        self._puts.submit(Put(key, value_id, data, INDEX_TYPE, "", "index"))

    async def anti_entropy(self, *, again_if_busy: bool = True) -> None:
        """Full `get` of every bridged type: repairs whatever listen missed.

        One at a time: asked while one runs (the store changed, the rendezvous
        came back), the running one goes round once more when it is done; the
        periodic job (`again_if_busy=False`) just skips a round, so a slow
        rendezvous is not asked back to back.
        """
        if self._anti_entropy_running:
            self._anti_entropy_again = self._anti_entropy_again or again_if_busy
            return
        self._anti_entropy_running = True
        try:
            self._anti_entropy_again = True
            while self._anti_entropy_again and not self.stopping:
                self._anti_entropy_again = False
                await self._full_get()
        finally:
            self._anti_entropy_running = False

    async def _anti_entropy_job(self) -> None:
        await self.anti_entropy(again_if_busy=False)

    async def _full_get(self) -> None:
        store = self.bridging_store
        for service_type in list(self._listens):
            try:
                started = time.monotonic()
                values = await store.get(self.bridge.key_for(service_type))
                self._observe("get", self.bridging_via, time.monotonic() - started)
            except RendezvousError as exc:
                self._rendezvous_state(False, str(exc), "get")
                return
            self._rendezvous_state(True, "", "get")
            now = self.clock()
            for value in values:
                self._remote_value(service_type, value.data, now)

    async def _tick(self) -> None:
        now = self.clock()
        self._execute(self.bridge.tick(now))
        self._publish_type_index(now)

    async def _save_state_job(self) -> None:
        self._save_state()

    async def _status_job(self) -> None:
        self.write_status()
        self._notify_service()

    def _notify_service(self) -> None:
        """READY=1 once bridging or following the island's leader; STATUS= a one-line summary."""
        st = self.leadership.status() if self.leadership else None
        ready = self.bridge.active or (st is not None and st["state"] == "follower")
        role = "bridging" if self.bridge.active else (st["state"] if st else "idle")
        stage = f"stage {st['stage']}, " if st else ""
        counts = f"{len(self.bridge.exports())} exported, {len(self.bridge.imports())} imported"
        self.notifier.update(ready, f"{stage}{role} via {self.bridging_via}: {counts}")

    # -- actions -------------------------------------------------------------

    def _refresh_dns(self) -> None:
        """Rebuild the DNS-SD zone once per burst of changes (called soon after them)."""
        self._dns_dirty = False
        if self.dns is not None:
            self.dns.zone.update(dns_services(self.config, self.bridge))

    def _execute(self, actions: list[Action]) -> None:
        if self.dns is not None and not self._dns_dirty:
            self._dns_dirty = True  # local or remote news: the zone follows on the next loop turn
            asyncio.get_running_loop().call_soon(self._refresh_dns)
        for action in actions:
            if isinstance(action, Put):
                level = logging.DEBUG if action.why == "refresh" else logging.INFO
                log.log(level, "export %s: %r (%s)", action.why, action.instance, action.service_type)
                assert self._puts is not None
                self._puts.submit(action)
            elif isinstance(action, Publish):
                self._publish(action)
            elif isinstance(action, Withdraw):
                log.info("withdrawing import %r from %s", action.instance, action.site)
                self._link_ops.submit(
                    (action.service_type, action.instance),
                    functools.partial(self.link.withdraw, action.service_type, action.instance),
                )
            elif isinstance(action, Reject):
                self._log_reject(action)
            elif isinstance(action, TrustNews):
                self._trust_news(action.event)
            elif isinstance(action, Damped):
                self._log_damped(action)

    def _log_damped(self, news: Damped) -> None:
        what = f"{news.instance!r} ({news.service_type}{f' from {news.site}' if news.site else ''})"
        if news.held:
            level = logging.WARNING if self.bridge.stats.damped == 1 else logging.INFO
            keeps = (
                "this link keeps showing its last state"
                if news.site
                else "other sites keep its last exported state"
            )
            log.log(
                level,
                "%s keeps changing (%d changes): %s until it settles (flap damping, flap-half-life %g s)",
                what,
                news.changes,
                keeps,
                self.config.flap_half_life,
            )
        else:
            log.info(
                "%s settled after %d held changes: %s its current state",
                what,
                news.changes,
                "showing" if news.site else "exporting",
            )

    def trust_site(self, site: str, signer: bytes | None) -> str | None:
        """None if `signer` may speak for `site` (a leader record), else why not."""
        if signer is None:
            return None  # public network: nothing is signed
        if site == self.config.site and signer == self.codec.public_key:
            return None  # our own record, whatever was learned for our site before
        verdict = self.bridge.trust.check(site, signer)
        if verdict.event is not None:
            self._trust_news(verdict.event)
        return None if verdict.accept else verdict.reason

    def _trust_news(self, event: KeyEvent) -> None:
        key = format_public_key(event.key)
        if event.kind == "learned":
            log.info("trusting site %s with key %s (first use)", event.site, key)
            try:
                key_store.save_known_sites(self.config.state_dir, self.bridge.trust.known)
            except OSError as exc:
                log.error("%s", exc)
            return
        log.error(
            "SITE KEY CHANGED: values signed for site %s by key %s are REFUSED; the trusted key is %s. "
            "If the site really has a new key, pin it in trusted-sites (or remove the site from %s "
            "and restart).",
            event.site,
            key,
            format_public_key(event.known or b""),
            os.path.join(self.config.state_dir, key_store.KNOWN_SITES_FILE),
        )

    def _publish(self, action: Publish) -> None:
        svc = action.service
        log.info(
            "importing %r (%s) from %s as host %s port %d",
            svc.instance,
            svc.type,
            action.site,
            svc.host,
            svc.port,
        )

        async def work() -> None:
            actual = await self.link.publish(svc)
            if actual != svc.instance:
                log.warning("link renamed %r to %r after a conflict", svc.instance, actual)
                self.bridge.renamed(action.site, svc, actual)

        self._link_ops.submit(svc.key, work)

    def _log_reject(self, reject: Reject) -> None:
        if reject.reason not in self._logged_rejects:
            self._logged_rejects.add(reject.reason)
            log.warning(
                "rejected a record (%s): %s; further ones are only counted", reject.reason, reject.detail
            )
        else:
            log.debug("rejected (%s): %s", reject.reason, reject.detail)

    def _rendezvous_state(self, ok: bool, detail: str, op: str = "put") -> None:
        """Puts and gets report here; the rendezvous is OK when neither is failing.

        Kept per operation so that a proxy failing one and answering the other
        (a lying one) does not flip the state, and the logs, at every round.
        """
        if ok:
            if self._rendezvous_failing.pop(op, None) is not None and self._puts is not None:
                self._puts.retry_now()  # it answers again: pending puts need not wait out their backoff
        else:
            self._rendezvous_failing[op] = detail
        ok = not self._rendezvous_failing
        if ok and not self._rendezvous_ok:
            log.info("rendezvous reachable again")
            if self._puts is not None:
                self._puts.retry_now()
            asyncio.get_running_loop().create_task(self.anti_entropy())
        elif not ok and self._rendezvous_ok:
            # The proxy adapter logs each failure condition itself (once); say what it means here.
            level = logging.INFO if getattr(self.rendezvous, "trouble", None) is not None else logging.WARNING
            log.log(
                level,
                "rendezvous unreachable (%s): imports stay as they are, puts are retried with backoff",
                detail,
            )
        self._rendezvous_ok = ok

    def _save_state(self) -> None:
        if self.bridge.seq != self._state.last_seq:
            self._state.last_seq = self.bridge.seq
            try:
                state_store.save(self.config.state_dir, self._state)
            except OSError as exc:
                log.error("%s", exc)

    def status(self) -> dict[str, Any]:
        """What `z2z status` prints (JSON-friendly)."""
        trouble = getattr(self.rendezvous, "trouble", None)  # the proxy's ConditionLog
        return {
            "site": self.config.site,
            "network": self.config.network,
            "node": self.node_id,
            "pid": os.getpid(),
            "time": self.clock(),
            "bridging": self.bridge.active,
            "bridging_via": self.bridging_via,
            "rendezvous": self.config.rendezvous,
            "rendezvous_ok": self._rendezvous_ok,
            "rendezvous_failing": trouble.failing if trouble is not None else [],
            "rendezvous_failures": dict(trouble.counts) if trouble is not None else {},
            "exported": sorted(s.instance + "." + s.type for s in self.bridge.exports()),
            "imported": sorted(f"{s.instance}.{s.type} (from {site})" for site, s in self.bridge.imports()),
            "rejected": dict(self.bridge.stats.rejected),
            "flapping": [f"{i}.{t}" for t, i in self.bridge.held()]
            + [f"{i}.{t} (from {site})" for site, t, i in self.bridge.held_imports()],
            "private": self.codec.private,
            "site_key": format_public_key(self.codec.public_key) if self.codec.public_key else None,
            "filtered": self.bridge.filtered.counts(),
            "types": {
                "export": list(self.bridge.policy.export_types),
                "import": list(self.bridge.policy.import_types),
                "seen": sorted(self._seen_types),
                "exported_elsewhere": sorted(self._index_types),
                "listening": sorted(self._listens),
            },
            "services": [service_json(s, "export", self.config.site) for s in self.bridge.exports()]
            + [service_json(s, "import", site) for site, s in self.bridge.imports()],
            "stages": self.leadership.status() if self.leadership else None,
            "leaders": [
                {"site": r.site, "node": r.node, "contact": r.contact, "structure": r.structure}
                for r in (self.leadership.machine.registry.records.values() if self.leadership else ())
            ],
        }

    def write_status(self, stopped: bool = False) -> None:
        """Publish `status()` as <state-dir>/status.json for `z2z status` (atomic write)."""
        doc = self.status()
        doc["stopped"] = stopped
        try:
            state_store.write_json(self.config.state_dir, STATUS_FILE, doc)
        except OSError as exc:
            log.debug("cannot write status: %s", exc)


def service_json(service: Service, direction: str, site: str) -> dict[str, Any]:
    return {
        "direction": direction,
        "site": site,
        "type": service.type,
        "instance": service.instance,
        "host": service.host,
        "port": service.port,
        "addresses": list(service.addresses),
    }


def all_addresses() -> list[str]:
    """Every address of every interface of this host (the address policy never imports them)."""
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        out += [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips]
    return out


def contact_address(interfaces: tuple[str, ...]) -> str:
    """Our most useful address on the bridged link(s): routable IPv4, then routable IPv6."""
    candidates: list[str] = []
    for adapter in ifaddr.get_adapters():
        ips = [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips]
        if interfaces and adapter.nice_name not in interfaces and not set(ips) & set(interfaces):
            continue
        candidates += ips
    routable = routable_addresses(candidates)
    if routable:
        return routable[0]
    return candidates[0].split("%")[0] if candidates else "127.0.0.1"
