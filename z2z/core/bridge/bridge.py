"""The export/import logic of one gateway: a pure state machine.

`Bridge` is driven by events (a local service came, changed or went; a DHT value
arrived; time passed) and answers each with a list of actions for the adapters
to carry out (put a value, publish or withdraw a proxied service).  It does no
I/O and reads no clock: the runtime passes `now` in, so every rule here is unit
testable in microseconds and the same code runs in the simulator.

Rules (docs/protocol.md, docs/architecture.md):
- only routable addresses cross; a service with none is not exported;
- a site never imports its own values and never exports what a gateway
  published as a proxy (proxied host labels end in `PROXY_MARK`);
- every new version gets a higher sequence number; importers keep the highest
  and drop a version once its application TTL (origin clock + skew) is over;
- imported instance names that would collide on the link get a site suffix;
- in a private network (z2z.core.security) values are sealed and signed, and only
  sites the trust policy accepts are imported;
- an import must pass the address policy whole and fit its site's quotas;
- a service that keeps changing is held until it settles (flap damping,
  `z2z.core.flap`): a local one at its last exported state, an import at what the
  link last showed of it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from itertools import islice

from z2z.core.bridge.actions import Action, Damped, Publish, Put, Reject, TrustNews, Withdraw
from z2z.core.bridge.imports import Import, ImportTable
from z2z.core.bridge.quota import QUOTA_SETTINGS, Overflows
from z2z.core.flap import FlapDamper
from z2z.core.policy import FilterStats, Policy
from z2z.core.records import (
    RecordError,
    Service,
    host_label,
    routable_addresses,
    truncate_label,
    validate,
)
from z2z.core.security import Codec, ImportRules, SecurityError, TrustPolicy
from z2z.core.wire import digest as digests
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope, ProtocolError

PROXY_MARK = "-z2z"
# Withdrawn versions remembered outside the quotas (`Bridge._bury`): ~100 bytes each.
GRAVEYARD_MAX = 16_384


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """What a gateway bridges and how; see docs/configuration.md for each knob."""

    site: str
    network: str
    node: str
    types: tuple[str, ...]
    ttl: int = 120
    refresh: float = 40.0
    max_skew: float = 30.0
    # Half-life (s) of the flap damper's penalty; 0 exports every change at once.
    flap_half_life: float = 10.0
    instance_template: str = "{instance} ({site})"
    host_template: str = "{host}-{site}"
    export: bool = True
    import_: bool = True
    # The admin's filters (z2z.core.policy); None bridges `types` both ways.
    policy: Policy | None = None
    # Address policy and per-site quotas for imports (z2z.core.security).
    rules: ImportRules = field(default_factory=ImportRules)

    def effective_policy(self) -> Policy:
        if self.policy is not None:
            return self.policy
        return Policy.make(self.types if self.export else (), self.types if self.import_ else ())


# ---------------------------------------------------------------------------
# state


@dataclass(slots=True)
class _Export:
    service: Service
    seq: int
    issued: float  # when the current version (seq, ts) was made
    put_at: float = 0.0  # when it was last put (a refresh may re-put the same version)
    last: Put | None = None  # the current version as put, to re-put byte for byte
    ttl: int = 0  # the current version's ttl (a reload may change the setting)
    digest: bytes = b""  # content digest of `service` (z2z.core.wire.digest)


@dataclass(slots=True)
class BridgeStats:
    puts: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    damped: int = 0  # holds started by flap damping


class Bridge:
    """Export local services, import remote ones; see the module docstring."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        last_seq: int = 0,
        active: bool = True,
        codec: Codec | None = None,
        trust: TrustPolicy | None = None,
    ) -> None:
        self.settings = settings
        # Public network unless the codec holds a secret (then: sealed, signed values).
        self.codec = codec or Codec(settings.network)
        self.trust = trust or TrustPolicy()
        self.seq = last_seq
        # Only an island's leader bridges (z2z.core.stages); followers track everything
        # (local services, remote versions) so that a takeover publishes at once.
        self.active = active
        self.policy = settings.effective_policy()
        self.filtered = FilterStats()  # what each filter rule stopped (z2z status)
        self._keys = {t: self.codec.type_key(t) for t in settings.types}
        self._local: dict[tuple[str, str], Service] = {}
        self._exports: dict[tuple[str, str], _Export] = {}
        self._imports = ImportTable()
        # (site, type, instance) -> (seq, expiry) of withdrawn versions kept outside the quotas.
        self._graveyard: OrderedDict[tuple[str, str, str], tuple[int, float]] = OrderedDict()
        self.stats = BridgeStats()
        self.overflows = Overflows()  # sites over a quota, for status (never cut silently)
        self._flaps = FlapDamper(settings.flap_half_life)  # local services, by (type, instance)
        self._import_flaps = FlapDamper(settings.flap_half_life)  # imports, by (site, type, instance)
        self._changes: Counter[tuple[str, ...]] = Counter()  # per held key, changes swallowed

    # -- queries -------------------------------------------------------------

    def key_for(self, service_type: str) -> bytes:
        key = self._keys.get(service_type)
        if key is None:  # a type discovered at run time ("*") or added by a reload
            key = self._keys[service_type] = self.codec.type_key(service_type)
        return key

    def exports(self) -> list[Service]:
        return [e.service for e in self._exports.values()]

    def catalogue(self) -> list[Service]:
        """Everything this gateway can vouch for: local services and published imports."""
        return list(self._local.values()) + [svc for _, svc in self.imports()]

    def held(self) -> list[tuple[str, str]]:
        """(type, instance) of local services held by flap damping."""
        return sorted(k for k in self._flaps.held_keys() if isinstance(k, tuple))

    def held_imports(self) -> list[tuple[str, str, str]]:
        """(site, type, instance) of imports held by flap damping."""
        return sorted(k for k in self._import_flaps.held_keys() if isinstance(k, tuple))

    def import_origin(self, site: str, service_type: str, published: str) -> Service | None:
        """The service as `site` exported it, for the import published on the link as `published`."""
        for (s, t, _), imp in self._imports.items():
            if (
                s == site
                and t == service_type
                and imp.published is not None
                and imp.published.instance == published
            ):
                return imp.origin
        return None

    def imports(self) -> list[tuple[str, Service]]:
        """(origin site, service as published on the link) for every live import."""
        return [
            (site, imp.published) for (site, _, _), imp in self._imports.items() if imp.published is not None
        ]

    # -- local side ----------------------------------------------------------

    def local_up(self, service: Service, now: float) -> list[Action]:
        """A service was resolved on the link (new or changed)."""
        if not (self.policy.exports_type(service.type) or self.policy.imports_type(service.type)):
            return []  # neither bridged way; import-only types are kept for name collisions
        if service.host.endswith(PROXY_MARK):
            return []  # a proxy published by some z2z gateway: never re-export it
        try:
            validate(service)
        except RecordError as exc:
            return [self._reject("bad-local-service", f"{service.instance!r}: {exc}")]
        previous = self._local.get(service.key)
        limit = self.settings.rules.default.max_services
        if previous is None and len(self._local) >= limit:
            # A device announcing thousands of names: receivers would refuse them anyway.
            return [self._quota_reject(self.settings.site, "local-quota", service.instance, now)]
        if previous is None and self.settings.site in self.overflows:
            self.overflows.fits(self.settings.site)
        self._local[service.key] = service
        actions = self._make_room(service.type, service.instance)
        if previous != service and (previous is not None or service.key in self._flaps):
            hold = self._flap(service.key, now)  # a change, or back after a goodbye
            if hold is not None:
                return actions + hold
        return actions + self._export(service, now)

    def _flap(self, key: tuple[str, str], now: float) -> list[Action] | None:
        """Count one change of a local service; the actions to take instead if it is held."""
        return self._count_flap(self._flaps, key, now, Damped(key[0], key[1], True, 0))

    def _count_flap(
        self, damper: FlapDamper, key: tuple[str, ...], now: float, notice: Damped
    ) -> list[Action] | None:
        was_held = damper.held(key, now)
        if not damper.flap(key, now):
            return None
        self._changes[key] += 1
        if was_held:
            return []
        self.stats.damped += 1
        return [replace(notice, changes=self._changes[key])]

    def _export(self, service: Service, now: float) -> list[Action]:
        if not self.settings.export or not self.active:
            return []
        stop = self.policy.export_verdict(service)
        if stop is not None:  # filtered: never reaches the DHT (and a tombstone if it was there)
            self.filtered.stopped(stop, service.key)
            return self._unexport(service.key, now)
        actions: list[Action] = []
        addresses = routable_addresses(service.addresses)
        if not addresses:
            actions.append(self._reject("no-routable-address", service.instance))
            return actions + self._unexport(service.key, now)
        exported = replace(service, addresses=addresses)
        current = self._exports.get(service.key)
        if current is not None and current.service == exported:
            return actions
        self._exports[service.key] = _Export(exported, 0, now, digest=digests.content_digest(exported))
        actions.append(self._put(service.key, now, "new" if current is None else "changed"))
        return actions

    def local_down(self, service_type: str, instance: str, now: float) -> list[Action]:
        """A local service said goodbye or expired."""
        key = (service_type, instance)
        if self._local.pop(key, None) is not None:
            hold = self._flap(key, now)
            if hold is not None:
                return hold
        return self._unexport(key, now)

    def _unexport(self, key: tuple[str, str], now: float) -> list[Action]:
        if key not in self._exports:
            return []
        action = self._put(key, now, "gone")
        del self._exports[key]
        return [action]

    def next_seq(self, now: float) -> int:
        """A new sequence number for this site: above every earlier one, near `now` in ms.

        Every value this gateway puts (exports, tombstones, its type-index entry)
        takes its number here, so numbers never repeat across kinds or restarts.
        """
        self.seq = max(self.seq + 1, int(now * 1000))
        return self.seq

    def _refresh(self, key: tuple[str, str], now: float) -> Put:
        """Re-put the current version unchanged while it stays valid, else make a new one.

        OpenDHT refreshes a value re-put with the same id and the same bytes in
        place (remote nodes log "refreshed value"), but keeps every value with a
        new id until it expires (10 minutes): a new version per refresh piles up
        ``600 / refresh`` versions per instance under the key.  So a version is
        re-put as it is while importers keep it (``ts + ttl``) for at least two
        more refresh periods, and replaced only then: with ttl 120 s and refresh
        40 s, a new version every 80 s instead of every 40 s; with a longer ttl,
        far fewer (docs/protocol.md).
        """
        exp = self._exports[key]
        s = self.settings
        if exp.last is not None and exp.issued + exp.ttl - now >= 2 * s.refresh:
            exp.put_at = now
            self.stats.puts += 1
            return replace(exp.last, why="refresh")
        return self._put(key, now, "refresh")

    def _put(self, key: tuple[str, str], now: float, why: str) -> Put:
        exp = self._exports[key]
        exp.seq, exp.issued, exp.put_at, exp.ttl = self.next_seq(now), now, now, self.settings.ttl
        s = self.settings
        env = Envelope(s.network, s.site, s.node, self.seq, now, s.ttl, why == "gone", exp.service)
        self.stats.puts += 1
        dht_key = self.key_for(exp.service.type)
        exp.last = Put(
            key=dht_key,
            value_id=self.codec.value_id(s.site, exp.service.type, exp.service.instance, self.seq),
            data=self.codec.seal(protocol.encode(env), dht_key),
            service_type=exp.service.type,
            instance=exp.service.instance,
            why=why,
        )
        return exp.last

    # -- digests (anti-entropy by digest, z2z.core.wire.digest) ---------------

    def export_digest(self, service_type: str) -> tuple[int, str]:
        """(count, digest) of what this site exports of `service_type` now."""
        return digests.set_digest(
            (exp.service.instance, exp.digest) for (t, _), exp in self._exports.items() if t == service_type
        )

    def exported_types(self) -> set[str]:
        return {t for t, _ in self._exports}

    def import_digests(self, service_type: str) -> dict[str, tuple[int, str]]:
        """Per origin site: (count, digest) of the live imports of `service_type` held now."""
        per_site: dict[str, list[tuple[str, bytes]]] = {}
        for (site, t, instance), imp in self._imports.items():
            if t == service_type and imp.origin is not None:
                per_site.setdefault(site, []).append((instance, imp.digest))
        return {site: digests.set_digest(items) for site, items in per_site.items()}

    def import_digest(self, site: str, service_type: str) -> tuple[int, str]:
        return self.import_digests(service_type).get(site, digests.set_digest(()))

    def next_import_expiry(self, service_type: str) -> float | None:
        """When the first live import of `service_type` runs out of TTL (None: none held)."""
        return min(
            (imp.expires for (_, t, _), imp in self._imports.items() if t == service_type and imp.origin),
            default=None,
        )

    # -- remote side ---------------------------------------------------------

    def remote_value(self, service_type: str, data: bytes, now: float) -> list[Action]:
        """A value arrived from the rendezvous under `service_type`'s key."""
        if not self.settings.import_ or not self.policy.imports_type(service_type):
            return []
        try:
            opened = self.codec.open(data, self.key_for(service_type))
            env = protocol.decode(opened.body)
        except (SecurityError, ProtocolError) as exc:
            return [self._reject(exc.reason, str(exc))]
        if env.network != self.settings.network:
            return [self._reject("other-network", env.network[:64])]
        if env.service.type != service_type:
            return [self._reject("wrong-key", f"{env.service.type} under {service_type}")]
        if env.site == self.settings.site:
            return []  # our own export, echoed back: never import it
        stop = self.policy.import_verdict(env.site, env.service)
        if stop is not None:  # filtered: never reaches the link
            self.filtered.stopped(stop, (env.site, env.service.type, env.service.instance))
            return []
        skew = self.settings.max_skew
        if env.ts > now + skew:
            return [self._reject("from-future", f"{env.site}/{env.service.instance}")]
        if env.expires() + skew < now:
            self.stats.rejected["stale"] += 1  # old versions linger in the DHT: not news
            return []
        ikey = (env.site, env.service.type, env.service.instance)
        known = self._imports.get(ikey)
        buried = self._graveyard.get(ikey)
        if buried is not None and buried[1] < now:
            del self._graveyard[ikey]
            buried = None
        if (known is not None and env.seq <= known.seq) or (buried is not None and env.seq <= buried[0]):
            self.stats.rejected["old-seq"] += 1
            return []
        # Only news pays for a signature check (Ed25519 is the costly step here).
        news: list[Action] = []
        if opened.signer is not None:
            what = f"{env.site}/{env.service.instance}"
            if not self.codec.verify(opened):
                return [self._reject("bad-signature", what)]
            verdict = self.trust.check(env.site, opened.signer)
            if verdict.event is not None:
                news.append(TrustNews(verdict.event))
            if not verdict.accept:
                return [*news, self._reject(verdict.reason, what)]
        expires = env.expires() + skew
        size = len(opened.body)
        if env.gone:
            if known is None:  # nothing to withdraw: only remember the version, cheaply
                self._bury(ikey, env.seq, expires)
                return news
            over = self._over_quota(env.site, ikey, size)
            if over is not None:
                return [*news, self._quota_reject(env.site, over, env.service.instance, now, size)]
            entry = Import(env.seq, expires, None, size=size)
            self._imports[ikey] = entry
            if known is not None and known.published is not None and self.active:
                hold = self._import_flap(ikey, now)
                if hold is not None:  # the link keeps showing it until the flapping stops
                    entry.published = known.published
                    return news + hold
            return news + self._unpublish(known, env.site)
        violation = self.settings.rules.address_violation(env.site, env.service.addresses)
        if violation is not None:  # one bad address refuses the whole record
            return [*news, self._reject("address-policy", f"{env.site}/{env.service.instance}: {violation}")]
        addresses = routable_addresses(env.service.addresses)
        if not addresses:
            return [*news, self._reject("no-routable-address", f"{env.site}/{env.service.instance}")]
        over = self._over_quota(env.site, ikey, size)
        if over in ("quota-services", "quota-bytes"):
            over = self._make_quota_room(env.site, ikey, size)
        if over is not None:  # what was imported before stays as it is
            return [*news, self._quota_reject(env.site, over, env.service.instance, now, size)]
        if known is None and env.site in self.overflows:
            self.overflows.fits(env.site)  # a new service of this site fits again
        self._graveyard.pop(ikey, None)
        origin = replace(env.service, addresses=addresses)
        entry = Import(env.seq, expires, origin, size=size, digest=digests.content_digest(origin))
        self._imports[ikey] = entry
        if not self.active:
            return news
        if known is not None and known.published is not None and known.origin == origin:
            entry.published = known.published
            return news  # a refresh: same records, later expiry
        if known is not None:  # changed, or back after a tombstone
            hold = self._import_flap(ikey, now)
            if hold is not None:
                entry.published = known.published
                return news + hold
        name = known.published.instance if known and known.published else None
        entry.published = self._proxy_for(origin, env.site, name)
        return [*news, Publish(entry.published, env.site)]

    def _import_flap(self, ikey: tuple[str, str, str], now: float) -> list[Action] | None:
        site, service_type, instance = ikey
        return self._count_flap(self._import_flaps, ikey, now, Damped(service_type, instance, True, 0, site))

    def _settle_import(self, ikey: tuple[str, str, str]) -> list[Action]:
        """A held import settled: make the link show its current state."""
        imp = self._imports.get(ikey)
        if imp is None or not self.active:
            return []
        site = ikey[0]
        if imp.origin is None:
            actions = self._unpublish(imp, site)
            imp.published = None
            return actions
        name = imp.published.instance if imp.published is not None else None
        proxy = self._proxy_for(imp.origin, site, name)
        if proxy == imp.published:
            return []
        imp.published = proxy
        return [Publish(proxy, site)]

    def _over_quota(self, site: str, ikey: tuple[str, str, str], size: int) -> str | None:
        """Why storing `size` bytes under `ikey` would break `site`'s quotas, or None.

        Tombstones count too: each holds a slot until it expires.
        """
        rules = self.settings.rules
        limits = rules.limits(site)
        entries, used = self._imports.usage.get(site, (0, 0))
        old = self._imports.get(ikey)
        if old is None:
            if entries == 0 and len(self._imports.usage) >= rules.max_sites:
                return "quota-sites"
            if entries + 1 > limits.max_services:
                return "quota-services"
            if self._imports.entries + 1 > rules.max_imports:
                return "quota-total"
        if used - (old.size if old is not None else 0) + size > limits.max_bytes:
            return "quota-bytes"
        return None

    def _bury(self, ikey: tuple[str, str, str], seq: int, expires: float) -> None:
        """Remember a withdrawn version outside the quotas: (seq, expiry) per instance, bounded."""
        old = self._graveyard.pop(ikey, None)
        if old is not None and old[0] > seq:
            seq, expires = old
        self._graveyard[ikey] = (seq, expires)
        while len(self._graveyard) > GRAVEYARD_MAX:
            del self._graveyard[next(iter(self._graveyard))]  # the longest buried goes first

    def _make_quota_room(self, site: str, ikey: tuple[str, str, str], size: int) -> str | None:
        """Let a live service in by moving the site's tombstones to the graveyard, soonest-expiring first.

        A site whose services come and go leaves a tombstone per name for the TTL;
        counted in its quota they would lock out its new services.  In the
        graveyard they still refuse an older version (no ghost comes back), at a
        few dozen bytes each.
        """
        tombstones = sorted(
            (imp.expires, k)
            for k, imp in self._imports.items()
            if k[0] == site and imp.origin is None and imp.published is None and k != ikey
        )
        over = self._over_quota(site, ikey, size)
        for _, k in tombstones:
            if over not in ("quota-services", "quota-bytes"):
                break
            imp = self._imports.pop(k)
            assert imp is not None
            self._bury(k, imp.seq, imp.expires)
            over = self._over_quota(site, ikey, size)
        return over

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per origin site: (entries held, bytes held), as the quotas count them."""
        return {site: (u[0], u[1]) for site, u in self._imports.usage.items()}

    def set_active(self, active: bool, now: float) -> list[Action]:
        """Start bridging (this gateway now leads its island) or stop (it no longer does).

        Stopping withdraws imports from the link at once but sends no tombstones:
        the new leader of the same site re-exports with higher sequence numbers.
        """
        if active == self.active:
            return []
        self.active = active
        actions: list[Action] = []
        if active:
            for service in list(self._local.values()):
                if not self._flaps.held(service.key, now):
                    actions += self._export(service, now)
            for (site, _, _), imp in self._imports.items():
                if imp.origin is not None and imp.published is None:
                    imp.published = self._proxy_for(imp.origin, site, None)
                    actions.append(Publish(imp.published, site))
        else:
            self._exports.clear()
            for (site, _, _), imp in self._imports.items():
                if imp.published is not None:
                    actions.append(Withdraw(imp.published.type, imp.published.instance, site))
                    imp.published = None
        return actions

    def reput_all(self, now: float) -> list[Action]:
        """New versions of every export, e.g. after bridging moved to another store."""
        return [self._put(key, now, "refresh") for key in list(self._exports)]

    def reconfigure(self, settings: BridgeSettings, now: float) -> list[Action]:
        """New filters, templates or timers (a reload); identity (site, network, node) stays.

        What is still allowed stays bridged untouched; imports the new policy stops
        are withdrawn, exports it stops get tombstones, local services it now allows
        are exported.  Newly allowed remote values arrive with the next `get`.
        Proxies whose host or instance name the new templates change are re-published.
        """
        old = self.settings
        self.settings = replace(settings, site=old.site, network=old.network, node=old.node)
        if self.settings.rules != old.rules:
            self.overflows.clear()  # the refused values are handled again (z2z.app.bridging.forget_seen)
        self.policy = self.settings.effective_policy()
        self._flaps.half_life = self._import_flaps.half_life = self.settings.flap_half_life
        actions: list[Action] = []
        for ikey, imp in list(self._imports.items()):
            if imp.origin is None:
                continue
            stop = self.policy.import_verdict(ikey[0], imp.origin)
            if stop is None and self.settings.import_:
                continue
            self.filtered.stopped(stop or "import", ikey)
            del self._imports[ikey]
            if imp.published is not None:
                actions.append(Withdraw(imp.published.type, imp.published.instance, ikey[0]))
        renaming = (old.host_template, old.instance_template) != (
            self.settings.host_template,
            self.settings.instance_template,
        )
        if renaming and self.active:
            for (site, _, _), imp in self._imports.items():
                if imp.origin is None or imp.published is None:
                    continue
                before, imp.published = imp.published, None
                imp.published = self._proxy_for(imp.origin, site, None)
                if imp.published != before:
                    actions += [Withdraw(before.type, before.instance, site), Publish(imp.published, site)]
        if not self.settings.export:
            for key in list(self._exports):
                actions += self._unexport(key, now)
        for service in list(self._local.values()):
            if not self._flaps.held(service.key, now):
                actions += self._export(service, now)
        return actions

    def renamed(self, site: str, service: Service, actual_instance: str) -> None:
        """The link backend had to publish `service` under another instance name."""
        for (s, _, _), imp in self._imports.items():
            if s == site and imp.published == service:
                imp.published = replace(service, instance=actual_instance)

    def _proxy_for(self, origin: Service, site: str, name: str | None) -> Service:
        s = self.settings
        if name is None:
            name = origin.instance
            if self._name_taken(origin.type, name):
                suffixed = s.instance_template.format(instance=origin.instance, site=site)
                name = truncate_label(suffixed)
        hostname = host_label(s.host_template.format(host=origin.host, site=site))
        hostname = hostname[: 63 - len(PROXY_MARK)].rstrip("-") + PROXY_MARK
        return replace(origin, instance=name, host=hostname)

    def _name_taken(self, service_type: str, instance: str) -> bool:
        folded = instance.casefold()  # mDNS names compare case-insensitively
        if any(t == service_type and i.casefold() == folded for t, i in self._local):
            return True
        return any(
            imp.published is not None
            and imp.published.type == service_type
            and imp.published.instance.casefold() == folded
            for imp in self._imports.values()
        )

    def _make_room(self, service_type: str, instance: str) -> list[Action]:
        """A local service took a name an import was using: move the import aside."""
        folded = instance.casefold()
        for (site, _, _), imp in self._imports.items():
            pub = imp.published
            if pub is None or imp.origin is None:
                continue
            if pub.type == service_type and pub.instance.casefold() == folded:
                imp.published = None
                imp.published = self._proxy_for(imp.origin, site, None)
                return [Withdraw(pub.type, pub.instance, site), Publish(imp.published, site)]
        return []

    def _unpublish(self, known: Import | None, site: str) -> list[Action]:
        if known is None or known.published is None:
            return []
        pub = known.published
        return [Withdraw(pub.type, pub.instance, site)]

    # -- time ----------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Refresh exports that are due, end flap holds, drop imports whose TTL ran out."""
        actions: list[Action] = []
        for key in self._flaps.release(now):
            if not isinstance(key, tuple):
                continue
            actions.append(Damped(key[0], key[1], False, self._changes.pop(key, 0)))
            local = self._local.get(key)  # export what the link shows now, whatever happened meanwhile
            actions += self._export(local, now) if local is not None else self._unexport(key, now)
        for gkey, (_, expires) in list(islice(self._graveyard.items(), 256)):
            if expires < now:  # mostly buried in expiry order: the front is what expires first
                del self._graveyard[gkey]
        for ikey in self._import_flaps.release(now):
            if not isinstance(ikey, tuple):
                continue
            actions.append(Damped(ikey[1], ikey[2], False, self._changes.pop(ikey, 0), ikey[0]))
            actions += self._settle_import(ikey)
        for key, exp in list(self._exports.items()):
            if now - exp.put_at >= self.settings.refresh:
                actions.append(self._refresh(key, now))
        for ikey, imp in list(self._imports.items()):
            if imp.expires < now:
                del self._imports[ikey]
                if imp.published is not None:
                    pub = imp.published
                    actions.append(Withdraw(pub.type, pub.instance, ikey[0]))
        return actions

    def shutdown(self, now: float) -> list[Action]:
        """A clean stop: tombstones for every export, goodbyes for every import."""
        actions: list[Action] = []
        for key in list(self._exports):
            actions.extend(self._unexport(key, now))
        for (site, _, _), imp in self._imports.items():
            if imp.published is not None:
                actions.append(Withdraw(imp.published.type, imp.published.instance, site))
                imp.published = None
        return actions

    def _quota_reject(self, site: str, reason: str, instance: str, now: float, size: int = 0) -> Reject:
        """Refuse a record for `site`'s quota: counted, and the site marked over it (never silent)."""
        rules = self.settings.rules
        entries, used = self._imports.usage.get(site, (0, 0))
        held, limit = {
            "local-quota": (len(self._local), rules.default.max_services),
            "quota-services": (entries, rules.limits(site).max_services),
            "quota-bytes": (used + size, rules.limits(site).max_bytes),
            "quota-sites": (len(self._imports.usage), rules.max_sites),
            "quota-total": (self._imports.entries, rules.max_imports),
        }[reason]
        went_over = self.overflows.refused(site, reason, held, limit, now)
        unit = "bytes" if reason == "quota-bytes" else "services" if reason != "quota-sites" else "sites"
        where = (
            "on this link"
            if reason == "local-quota"
            else "imported" + ("" if reason in ("quota-sites", "quota-total") else f" from {site}")
        )
        detail = f"{site}/{instance!r}: {held} {unit} {where}, {QUOTA_SETTINGS[reason]} = {limit}"
        self.stats.rejected[reason] += 1
        return Reject(reason, detail, site, went_over)

    def _reject(self, reason: str, detail: str) -> Reject:
        self.stats.rejected[reason] += 1
        return Reject(reason, detail)
