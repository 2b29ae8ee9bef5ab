"""Bridging at run time: carries out the bridge's actions and feeds it what the link and the DHT say.

`Bridging` sits between the pure `Bridge` (z2z.core.bridge) and the adapters:

- link events (a service came, changed, went) and DHT values (pushed by a
  listen, or found by the periodic anti-entropy `get`) become bridge events;
- the actions the bridge returns are carried out: puts through the `PutQueue`,
  publish/withdraw through the per-service `KeyedSerial`, rejections and flap
  holds logged once, site keys learned persisted;
- it owns the store bridging uses now (the outside rendezvous, or the leaders'
  DHT once they have formed one) and moves listens, puts and anti-entropy when
  the stage machine says so (`bridge_via`);
- it keeps this site's entry of the type index (z2z.core.typeindex) and follows
  other sites' entries for ``import-types = ["*"]``.

It is also the narrow control surface `Leadership` acts through
(`z2z.app.leadership.LeadershipControl`): the stage machine never sees the gateway.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from z2z.adapters.link.base import DynamicBrowsing, LinkBackend
from z2z.adapters.rendezvous.base import AnswerTooBig, DhtValue, ListenHandle, Rendezvous, RendezvousError
from z2z.app import keys as key_store
from z2z.app.antientropy import DigestGate, Summaries
from z2z.app.executors import KeyedSerial, Pacer, PutQueue, TaskSet
from z2z.app.health import StoreHealth
from z2z.core.bridge import Action, Bridge, Damped, Publish, Put, Reject, TrustNews, Withdraw
from z2z.core.records import Service
from z2z.core.security import Codec, KeyEvent, SecurityError, format_public_key
from z2z.core.typeindex import INDEX_TYPE, TypeIndex, TypeIndexError
from z2z.core.typeindex import decode as decode_type_index
from z2z.core.wire import digest as digests
from z2z.core.wire.digest import Summary, SummaryError
from z2z.core.wire.gateways import GATEWAY_TYPE

log = logging.getLogger(__name__)

# OpenDHT keeps a value of the default type 10 minutes after its last put.
DHT_VALUE_LIFETIME = 600.0
# The caps a rendezvous adapter had before they scaled with the quotas.
MIN_VALUE_CAP = 4096
# A handled value's digest is forgotten once no get or listen has returned it for this long:
# by then OpenDHT has dropped the value, so the digest can only take memory (new names
# bring new values forever).  One returned later is just decoded again.
SEEN_FORGET_AFTER = 1.5 * DHT_VALUE_LIFETIME
# Bytes per value allowed in a get's answer: a typical value is < 1 KiB (JSON + base64 on the proxy).
BYTES_PER_VALUE = 2048


def versions_per_instance(refresh: float, ttl: float) -> int:
    """How many versions of one instance a key holds at once (OpenDHT keeps each id 10 minutes).

    The bridge makes a new version every ``refresh × max(1, ⌊ttl / refresh⌋ - 1)``
    seconds (re-putting the same one in between, `Bridge._refresh`).
    """
    refresh = max(refresh, 1.0)
    interval = refresh * max(1, math.floor(ttl / refresh) - 1)
    return math.ceil(DHT_VALUE_LIFETIME / interval) + 1


def value_cap(max_services_per_site: int, refresh: float, ttl: float, sites_per_key: int = 4) -> int:
    """How many values one type key may legitimately hold, with room to spare.

    A full site holds `max_services_per_site` instances, each with
    `versions_per_instance` versions under the key.  The cap allows
    `sites_per_key` full sites under one key (more sites of one type are
    legitimate but rarely all full), and never less than the old fixed 4,096.
    What lies beyond is refused as its own condition (``answer too big``), not
    taken for an outage.
    """
    return max(MIN_VALUE_CAP, versions_per_instance(refresh, ttl) * max_services_per_site * sites_per_key)


def apply_value_cap(store: Any, cap: int, refresh: float, ttl: float) -> None:
    """Size a rendezvous adapter's get and listen caps (those it has) for `cap` values per key."""
    if hasattr(store, "max_values"):
        store.max_values = cap
    if hasattr(store, "max_get_bytes"):
        store.max_get_bytes = max(store.max_get_bytes, cap * BYTES_PER_VALUE)
    if hasattr(store, "listen_flood_per_minute"):
        # A new listen first replays everything stored under the key (up to `cap` values),
        # then each instance is put (new or re-put) once per refresh; twice that is still
        # legitimate.  Without the replay, a key holding more than the cap per minute cut
        # every new listen, which then started over and replayed it all again (bench.scale:
        # 5,000 services, the importer at 50 % CPU and 800 services missing from its link).
        instances = cap / versions_per_instance(refresh, ttl)
        per_minute = cap + math.ceil(2 * instances * 60.0 / max(refresh, 1.0))
        store.listen_flood_per_minute = max(store.listen_flood_per_minute, per_minute)


class Bridging:
    """The bridge at work on one gateway: its executors, listens, anti-entropy and type index."""

    def __init__(
        self,
        bridge: Bridge,
        codec: Codec,
        link: LinkBackend,
        rendezvous: Rendezvous,
        type_index: TypeIndex,
        *,
        site: str,
        state_dir: str,
        flap_half_life: float,
        clock: Callable[[], float],
        trouble_logged: bool,
        observe: Callable[[str, str, float], None],
        changed: Callable[[], None],
    ) -> None:
        self.bridge = bridge
        self.codec = codec
        self.link = link
        self.rendezvous = rendezvous  # the outside rendezvous
        self.store: Rendezvous = rendezvous  # where bridging puts, listens and gets now
        self.via = "rendezvous"
        self.type_index = type_index
        self.site = site
        self.state_dir = state_dir
        self.flap_half_life = flap_half_life
        self.clock = clock
        self._trouble_logged = trouble_logged  # the adapter logs each failure condition itself
        self._observe = observe  # (op, store, seconds): rendezvous latency, for metrics
        self._changed = changed  # local or remote news (the DNS zone follows)
        self.seen_types: set[str] = set()  # found on the link by the "*" type enumeration
        self.index_types: set[str] = set()  # exported elsewhere, per the type index
        self.listens: dict[str, ListenHandle] = {}  # imported type -> its listen on the store
        self.link_ops = KeyedSerial()
        self.pacer = Pacer(100.0)  # the gateway sets its `announce-rate` setting here
        self.puts = PutQueue(rendezvous, self._put_result, lambda s: self._observe("put", self.via, s))
        self.health = StoreHealth(self._health_changed)
        self.tasks = TaskSet("bridging")
        self.stopping = False
        self._logged_rejects: set[str] = set()
        self._anti_entropy_running = False
        self._anti_entropy_again = False
        # Digests of (type, value) already handled -> when last returned (oldest first): a get
        # that returns them again costs no decoding.  Bounded by `seen_max` and by age.
        self.seen_values: OrderedDict[bytes, float] = OrderedDict()
        self.seen_max = MIN_VALUE_CAP * 4
        self.skipped_known = 0  # values a get returned that were already handled
        # Type -> answers refused as too big; logged at WARNING once per type.
        self.answers_too_big: Counter[str] = Counter()
        self._cap: tuple[int, float, float] | None = None  # (values per key, refresh, ttl) once set
        self.relay: Any = None  # z2z.app.relay.Relay in a private network with relay on
        # Anti-entropy by digest (z2z.app.antientropy): this site's summaries, and when to get in full.
        self.summaries = Summaries(bridge, codec, site)
        self.gate = DigestGate()
        self.anti_entropy_every = 30.0  # the gateway sets its `anti-entropy` setting here
        self._summary_cache: OrderedDict[bytes, Summary | None] = OrderedDict()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Deliver puts and listen on every imported type (call once the link is up)."""
        self.puts.start()
        self.listen_all()

    async def stop(self, timeout: float) -> bool:
        """Deliver what is pending (tombstones) within `timeout`, then stop; False if some did not go."""
        delivered = await self.puts.drain(timeout)
        self.stopping = True
        return delivered

    async def close(self, timeout: float) -> None:
        for handle in self.listens.values():
            handle.cancel()
        self.listens = {}
        await self.puts.close()
        await self.tasks.close()
        await self.link_ops.drain(timeout)

    # -- events from the link ------------------------------------------------

    def local_up(self, service: Service) -> None:
        self.execute(self.bridge.local_up(service, self.clock()))

    def local_down(self, service_type: str, instance: str) -> None:
        self.execute(self.bridge.local_down(service_type, instance, self.clock()))

    def local_refused(self, name: str, reason: str) -> None:
        self.count_reject("bad-local-service")
        self._log_reject(Reject("bad-local-service", f"{name!r}: {reason}"))

    def type_seen(self, service_type: str) -> None:
        """The link announced a type (type enumeration, for ``"*"``): browse it, import it."""
        if service_type == GATEWAY_TYPE or service_type in self.seen_types:
            return
        policy = self.bridge.policy
        if not (policy.exports_type(service_type) or policy.imports_type(service_type)):
            if self.bridge.filtered.stopped("deny-types", ("type", service_type)):
                log.info("type %s seen on the link, not bridged (deny-types)", service_type)
            return
        self.seen_types.add(service_type)
        log.info("type %s seen on the link: bridging it", service_type)
        self.follow_types()

    def browse_types(self) -> list[str]:
        """What the link must browse: the named types, and those seen or exported elsewhere."""
        policy = self.bridge.policy
        named = (*policy.static_types(), *sorted(self.seen_types | self.index_types))
        return [t for t in named if policy.exports_type(t) or policy.imports_type(t)]

    def follow_types(self) -> None:
        """Browse and listen to whatever the policy (and the types seen) now asks for."""
        if isinstance(self.link, DynamicBrowsing):
            self.tasks.spawn(self.link.browse(self.browse_types()), name="browse")
        wanted = set(self.import_types())
        for t in set(self.listens) - wanted:
            self.listens.pop(t).cancel()
        if wanted - set(self.listens) and not self.stopping:
            self.listen_all()
            self.tasks.spawn(self.anti_entropy(), name="anti-entropy")

    # -- the DHT side ----------------------------------------------------------

    def import_types(self) -> list[str]:
        policy = self.bridge.policy
        types = list(policy.static_import_types())
        if policy.wildcard_import:  # "*": whatever this link shows or other sites export
            known = self.seen_types | self.index_types | set(policy.static_types())
            types += sorted(t for t in known if t not in types and policy.imports_type(t))
            types.append(INDEX_TYPE)
        return types

    def listen_all(self) -> None:
        """Listen on every imported type's key in the store (those not yet listened)."""
        for t in self.import_types():
            if t not in self.listens:
                self.listens[t] = self.store.listen(self.bridge.key_for(t), self._listener_for(t))

    def _listener_for(self, service_type: str) -> Callable[[DhtValue, bool], None]:
        def on_value(value: DhtValue, expired: bool) -> None:
            if not expired:  # expiry is decided by the application TTL, not the DHT
                self.remote_value(service_type, value.data, self.clock())

        return on_value

    def set_value_cap(self, cap: int, refresh: float, ttl: float) -> None:
        """Scale the stores' caps and the seen-values memory with the quotas (`value_cap`)."""
        self.seen_max = 2 * cap
        for store in {id(self.rendezvous): self.rendezvous, id(self.store): self.store}.values():
            apply_value_cap(store, cap, refresh, ttl)
        self._cap = (cap, refresh, ttl)

    def forget_seen(self) -> None:
        """Handle every value again (the policy or quotas changed: a refused value may fit now)."""
        self.seen_values.clear()
        self.gate.forget()  # and get every type in full once: the digests cannot tell

    def _first_sight(self, service_type: str, data: bytes, now: float) -> bool:
        """True the first time this exact value of this type is handled (bounded memory)."""
        mark = hashlib.blake2b(data, digest_size=16, person=service_type.encode()[-16:]).digest()
        known = mark in self.seen_values
        self.seen_values[mark] = now
        if known:
            self.seen_values.move_to_end(mark)
            return False
        while len(self.seen_values) > self.seen_max:
            self.seen_values.popitem(last=False)
        return True

    def forget_old_values(self, now: float) -> None:
        """Drop the digests of values no get or listen returned for `SEEN_FORGET_AFTER` seconds."""
        seen = self.seen_values
        while seen:
            mark, last = next(iter(seen.items()))
            if now - last < SEEN_FORGET_AFTER:
                break
            del seen[mark]

    def remote_value(self, service_type: str, data: bytes, now: float) -> None:
        if not self._first_sight(service_type, data, now):
            self.skipped_known += 1
            return
        if service_type != INDEX_TYPE:
            self.execute(self.bridge.remote_value(service_type, data, now))
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
        new = [t for t in new if t not in self.index_types and self.bridge.policy.imports_type(t)]
        if new:
            log.info("other sites export %s: importing", ", ".join(new))
            self.index_types.update(new)
            self.follow_types()

    def publish_type_index(self, now: float) -> None:
        """While bridging, keep this site's entry of the type index up to date."""
        if not self.bridge.active:
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
        value_id = self.codec.value_id(self.site, INDEX_TYPE, "", self.bridge.next_seq(now))
        self.puts.submit(Put(key, value_id, data, INDEX_TYPE, "", "index"))

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

    async def anti_entropy_job(self) -> None:
        """The periodic repair (an APScheduler job): skips a round while one still runs."""
        await self.anti_entropy(again_if_busy=False)

    async def _full_get(self) -> None:
        store = self.store
        for service_type in list(self.listens):
            if service_type == INDEX_TYPE:
                if not await self._get_type(store, service_type):
                    return
                continue
            flooded = ""
            try:
                started = time.monotonic()
                found = await store.get(self.bridge.key_for(digests.summary_key_name(service_type)))
                self._observe("get", self.via, time.monotonic() - started)
            except AnswerTooBig as exc:
                flooded = f"summaries: {exc}"  # digests cannot be trusted: get in full (its own cap)
                found = exc.values
            except RendezvousError as exc:
                self._report("get", False, str(exc))
                return
            summaries = self._newest_summaries(service_type, [v.data for v in found])
            holdings = self.bridge.import_digests(service_type)
            now = self.clock()
            why = flooded or self.gate.why_full(
                service_type,
                summaries,
                holdings,
                self.bridge.next_import_expiry(service_type),
                now + 1.2 * self.anti_entropy_every + 5.0,  # before the round after next
            )
            if why is None:
                self.gate.skipped += 1
                self._report("get", True, "")
                continue
            log.debug("anti-entropy: full get of %s (%s)", service_type, why)
            self.gate.full_gets += 1
            if not await self._get_type(store, service_type):
                return
            self.gate.reconciled(service_type, summaries, self.bridge.import_digests(service_type))

    def _newest_summaries(self, service_type: str, values: list[bytes]) -> dict[str, Summary]:
        """The newest valid summary of each other site among `values` (bad ones counted, not fatal)."""
        key = self.bridge.key_for(digests.summary_key_name(service_type))
        newest: dict[str, Summary] = {}
        for data in values:
            mark = hashlib.blake2b(data, digest_size=16).digest()
            if mark in self._summary_cache:
                summary = self._summary_cache[mark]
                self._summary_cache.move_to_end(mark)
            else:
                summary = self._open_summary(service_type, key, data)
                self._summary_cache[mark] = summary
                while len(self._summary_cache) > 4096:
                    self._summary_cache.popitem(last=False)
            if summary is None or summary.site == self.site:
                continue
            if summary.site not in newest or summary.seq > newest[summary.site].seq:
                newest[summary.site] = summary
        return newest

    def _open_summary(self, service_type: str, key: bytes, data: bytes) -> Summary | None:
        try:
            opened = self.codec.open(data, key)
            if not self.codec.verify(opened):
                raise SummaryError("bad signature")
            summary = digests.decode(opened.body)
            if summary.network != self.bridge.settings.network or summary.service_type != service_type:
                raise SummaryError("another network or type")
            if opened.signer is not None:
                refused = self.trust_site(summary.site, opened.signer)
                if refused is not None:
                    raise SummaryError(refused)
        except (SummaryError, SecurityError) as exc:
            self.count_reject("bad-summary")
            log.debug("ignoring a summary under %s: %s", service_type, exc)
            return None
        return summary

    async def _get_type(self, store: Rendezvous, service_type: str) -> bool:
        """Full get of one type key, each value handled; False if the store failed."""
        try:
            started = time.monotonic()
            values = await store.get(self.bridge.key_for(service_type))
            self._observe("get", self.via, time.monotonic() - started)
        except AnswerTooBig as exc:
            # The store answers: not an outage.  Use what was read (absence never withdraws).
            self._too_big(service_type, str(exc))
            values = exc.values
        except RendezvousError as exc:
            self._report("get", False, str(exc))
            return False
        self._report("get", True, "")
        now = self.clock()
        for value in values:
            self.remote_value(service_type, value.data, now)
        return True

    def _too_big(self, service_type: str, detail: str) -> None:
        self.answers_too_big[service_type] += 1
        level = logging.WARNING if self.answers_too_big[service_type] == 1 else logging.DEBUG
        log.log(
            level,
            "anti-entropy for %s: %s; using the values read so far (a flood, or quotas too small for "
            "this network); further ones are only counted",
            service_type,
            detail,
        )

    def tick(self) -> None:
        """Once a second: refreshes, TTL expiry and flap holds; the type index entry."""
        now = self.clock()
        self.execute(self.bridge.tick(now))
        self.publish_type_index(now)
        self.publish_summaries(now)
        self.forget_old_values(now)

    def publish_summaries(self, now: float) -> None:
        """While bridging, keep this site's summary of each exported type in the store."""
        if not self.bridge.active or not self.bridge.settings.export:
            self.summaries.reset()
            return
        for put in self.summaries.due(now, self.bridge.settings.refresh):
            self.puts.submit(put)

    # -- health of the store -----------------------------------------------------

    @property
    def store_ok(self) -> bool:
        return bool(self.health.up)

    def _put_result(self, ok: bool, detail: str) -> None:
        self._report("put", ok, detail)

    def _report(self, op: str, ok: bool, detail: str) -> None:
        if ok and op in self.health.failing:
            self.puts.retry_now()  # it answers again: pending puts need not wait out their backoff
        self.health.report(op, ok, detail)

    def _health_changed(self, up: bool, detail: str) -> None:
        if up:
            log.info("rendezvous reachable again")
            self.puts.retry_now()
            self.tasks.spawn(self.anti_entropy(), name="anti-entropy")
        else:
            level = logging.INFO if self._trouble_logged else logging.WARNING
            log.log(
                level,
                "rendezvous unreachable (%s): imports stay as they are, puts are retried with backoff",
                detail,
            )

    # -- the control surface of the stage machine (LeadershipControl) ----------

    def set_bridging(self, active: bool) -> None:
        self.execute(self.bridge.set_active(active, self.clock()))
        if active:
            self.log_bridging()

    def bridge_via(self, store: Rendezvous, name: str) -> None:
        """Move puts, listens and anti-entropy to `store`, and re-put every export there."""
        if store is self.store or self.stopping:
            return
        log.info("bridging via the %s from now on", "leaders' DHT" if name == "dht" else "outside rendezvous")
        for handle in self.listens.values():
            handle.cancel()
        self.listens = {}
        self.store, self.via = store, name
        self.puts.rendezvous = store
        if self._cap is not None:
            apply_value_cap(store, *self._cap)
        self.forget_seen()
        self.summaries.reset()
        self.listen_all()
        self.reput_exports()
        self.tasks.spawn(self.anti_entropy(), name="anti-entropy")

    def reput_exports(self) -> None:
        self.execute(self.bridge.reput_all(self.clock()))

    def submit_link_op(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        self.link_ops.submit(key, work)

    def count_reject(self, reason: str) -> None:
        self.bridge.stats.rejected[reason] += 1

    def trust_site(self, site: str, signer: bytes | None) -> str | None:
        """None if `signer` may speak for `site` (a leader record), else why not."""
        if signer is None:
            return None  # public network: nothing is signed
        if site == self.site and signer == self.codec.public_key:
            return None  # our own record, whatever was learned for our site before
        verdict = self.bridge.trust.check(site, signer)
        if verdict.event is not None:
            self._trust_news(verdict.event)
        return None if verdict.accept else verdict.reason

    def log_bridging(self) -> None:
        p = self.bridge.policy
        if p.export_types == p.import_types:
            log.info("bridging %s for site %s", ", ".join(p.export_types), self.site)
        else:
            log.info(
                "bridging for site %s: export %s; import %s",
                self.site,
                ", ".join(p.export_types) or "nothing",
                ", ".join(p.import_types) or "nothing",
            )

    # -- actions -------------------------------------------------------------------

    def execute(self, actions: list[Action]) -> None:
        self._changed()
        for action in actions:
            if isinstance(action, Put):
                level = logging.DEBUG if action.why == "refresh" else logging.INFO
                log.log(level, "export %s: %r (%s)", action.why, action.instance, action.service_type)
                self.puts.submit(action)
            elif isinstance(action, Publish):
                self._publish(action)
            elif isinstance(action, Withdraw):
                log.info("withdrawing import %r from %s", action.instance, action.site)
                self.link_ops.submit(
                    (action.service_type, action.instance),
                    functools.partial(self._withdraw, action.service_type, action.instance),
                )
            elif isinstance(action, Reject):
                self._log_reject(action)
            elif isinstance(action, TrustNews):
                self._trust_news(action.event)
            elif isinstance(action, Damped):
                self._log_damped(action)

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
            shown = svc
            if self.relay is not None:  # the site's addresses, a relayed proxy, or nothing
                was = self.relay.shown(svc.key)
                routed = await self.relay.route(action.site, svc)
                if routed is None:
                    if was is not None:
                        await self.link.withdraw(was.type, was.instance)
                    return
                shown = routed
            await self.pacer.wait()
            actual = await self.link.publish(shown)
            if actual != svc.instance:
                log.warning("link renamed %r to %r after a conflict", svc.instance, actual)
                self.bridge.renamed(action.site, svc, actual)

        self.link_ops.submit(svc.key, work)

    async def _withdraw(self, service_type: str, instance: str) -> None:
        if self.relay is not None:  # its relayed proxy's listener closes with it
            self.relay.forget(service_type, instance)
        await self.link.withdraw(service_type, instance)

    def _log_reject(self, reject: Reject) -> None:
        if reject.site is not None:  # a quota: one line per site that goes over (z2z.core.bridge.quota)
            over = self.bridge.overflows.get(reject.site)
            if reject.went_over and over is not None:
                log.warning(
                    "site %s is over its quota (%s): %s; its further records are refused and only counted "
                    "(status: over_quota; raise %s to take them)",
                    reject.site,
                    reject.reason,
                    reject.detail,
                    over.setting,
                )
            else:
                log.debug("rejected (%s): %s", reject.reason, reject.detail)
            return
        if reject.reason not in self._logged_rejects:
            self._logged_rejects.add(reject.reason)
            log.warning(
                "rejected a record (%s): %s; further ones are only counted", reject.reason, reject.detail
            )
        else:
            log.debug("rejected (%s): %s", reject.reason, reject.detail)

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
                self.flap_half_life,
            )
        else:
            log.info(
                "%s settled after %d held changes: %s its current state",
                what,
                news.changes,
                "showing" if news.site else "exporting",
            )

    def _trust_news(self, event: KeyEvent) -> None:
        key = format_public_key(event.key)
        if event.kind == "learned":
            log.info("trusting site %s with key %s (first use)", event.site, key)
            try:
                key_store.save_known_sites(self.state_dir, self.bridge.trust.known)
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
            os.path.join(self.state_dir, key_store.KNOWN_SITES_FILE),
        )

    # -- what status shows --------------------------------------------------------

    def types_status(self) -> dict[str, list[str]]:
        policy = self.bridge.policy
        return {
            "export": list(policy.export_types),
            "import": list(policy.import_types),
            "seen": sorted(self.seen_types),
            "exported_elsewhere": sorted(self.index_types),
            "listening": sorted(self.listens),
        }
