"""The python-zeroconf link backend: browse, resolve and publish proxies in-process.

`ZeroconfLink` runs python-zeroconf's asyncio API on the gateway's own loop.  It
only translates: browser events become `LinkListener` calls, `Service` values
become proxied `ServiceInfo` registrations.  Which services to bridge is decided
in the core (`z2z.core.bridge`), never here.

Things python-zeroconf does not do for us, and why they are done here:

* It picks interfaces by address, so interface names are mapped with ifaddr.
* Its first queries are QU (unicast reply wanted); beside avahi-daemon on port
  5353 such replies can land in avahi's socket, so every question is asked QM.
* Its browser reports our own registrations (multicast loopback); they are
  filtered so the core never sees its proxies as local services.
* Its `ServiceInfo.text` is the raw TXT rdata; it is parsed with dnslib so TXT
  strings keep their order and exact bytes (``properties`` is a dict).
* It writes a dotted instance name as several labels (its issue #146): every
  packet goes out through `MendedZeroconf`, which mends such names into one
  label (`z2z.adapters.link.labels`).
* It fills an answer of several packets section by section, so a PTR lands
  apart from its SRV/TXT/addresses, and clients that read one packet (Node's
  bonjour-service) see such instances incomplete; `MendedZeroconf` packs
  answers by instance (`z2z.adapters.link.packing`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from zeroconf import (
    BadTypeInNameException,
    DNSPointer,
    DNSQuestionType,
    DNSService,
    IPVersion,
    NonUniqueNameException,
    NotRunningException,
    ServiceInfo,
    ServiceNameAlreadyRegistered,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from z2z.adapters.link.base import (
    KeyedLocks,
    LinkError,
    LinkListener,
    call_safely,
    service_key,
    subtypes_by_type,
)
from z2z.adapters.link.rcvbuf import (
    RECEIVE_BUFFER,
    Reconciler,
    size_receive_buffer,
    socket_drops,
    socket_inode,
)
from z2z.adapters.link.zeroconf_ext import (
    LOCAL_SUFFIX,
    InterfaceSpec,
    MendedZeroconf,
    SubtypeOwners,
    SubtypePointers,
    cached_subtypes,
    compact_query_schedule,
    select_interfaces,
    service_from_info,
)
from z2z.core.records import (
    MAX_LABEL,
    RecordError,
    Service,
    encode_txt,
    normalize_type,
    parse_txt,
    truncate_label,
)

__all__ = [
    "MendedZeroconf",
    "ZeroconfLink",
    "encode_txt",
    "parse_txt",
    "select_interfaces",
    "service_from_info",
]

log = logging.getLogger(__name__)

META_QUERY = "_services._dns-sd._udp.local."  # DNS-SD type enumeration (RFC 6763 §9)
# One resolve attempt waits this long; a responder answers QM questions within
# ~120 ms, and python-zeroconf re-asks after ~0.3 s and then every second.
RESOLVE_TIMEOUT = 2.0
# How often the kernel's drop counter is read (a re-query follows new drops within this).
RECONCILE_CHECK = 2.0
RESOLVE_ATTEMPTS = 3
# How long a type must have been browsed before its cache is trusted for
# conflict checks instead of probing (see `ZeroconfLink.publish`).
CACHE_WARM_S = 1.5
# TTLs of the records published for a proxied service: RFC 6762 §10's, as avahi-daemon
# (the other backend) and real devices use them.  Records about a host (SRV, A, AAAA)
# live 120 s, so a crashed gateway's proxies cannot be resolved two minutes later;
# the others (PTR, TXT) 75 minutes.  With 120 s on every record, each client asked again
# for every PTR and TXT every ~100 s: at 5,000 imported services, a hundred refresh
# questions a second (with known-answer lists of thousands of PTRs) on the importing link.
PROXY_HOST_TTL = 120
PROXY_OTHER_TTL = 4500
# RFC 6762 §8.3: announcements at least one second apart.  python-zeroconf sends
# its three 225 ms apart, so a receiver busy for half a second (avahi-daemon while
# a campus brings 3,000 proxies at once) lost all three and missed the service
# until its next query, maybe an hour later.  These follow python-zeroconf's,
# with the doubling interval §8.3 allows (seconds after the previous one).
LATE_ANNOUNCEMENTS = (1.0, 2.0)
# A record said goodbye stays cached this long (RFC 6762 §10.1: TTL 1 s).
GOODBYE_S = 1.2
# Our own withdrawn PTR stays in our cache ~1 s after the goodbye (RFC 6762
# §10.1); do not mistake it for a rival when the same name is published again.
WITHDRAW_ECHO_S = 2.0


# ---------------------------------------------------------------------------
# the backend (helpers: z2z.adapters.link.zeroconf_ext)


@dataclass(slots=True)
class _Published:
    service: Service
    info: ServiceInfo
    instance: str
    # The announcement burst still running; cancelled before goodbyes or updates
    # so that a late announcement cannot resurrect or revert the service.
    announcing: Awaitable[None] | None = None


class ZeroconfLink:
    """A `LinkBackend` on python-zeroconf's asyncio API.

    `interfaces` are names (``lan0``) or addresses; empty means all non-loopback
    interfaces.  `ip_version` defaults to whatever the chosen interfaces have.
    With `always_probe` every publication is probed (see `publish`).  `subtypes`
    (``_universal._sub._ipp._tcp``...) are browsed with their types, so that each
    instance's subtypes are learned; any other ``_sub`` PTR in the cache counts too.
    """

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        ip_version: IPVersion | None = None,
        always_probe: bool = False,
        resolve_timeout: float = RESOLVE_TIMEOUT,
        subtypes: Sequence[str] = (),
    ) -> None:
        self._requested = tuple(interfaces)
        self._subtypes = subtypes_by_type(subtypes)
        self._specs, self._ip_version = select_interfaces(self._requested, ip_version)
        self._always_probe = always_probe
        self._resolve_timeout_ms = int(resolve_timeout * 1000)
        self._aiozc: AsyncZeroconf | None = None
        self._browsers: list[AsyncServiceBrowser] = []
        self._subtype_browsers: list[AsyncServiceBrowser] = []
        self._listener: LinkListener | None = None
        self._types: dict[str, str] = {}  # fully qualified, lower case -> bare type
        self._browsing_since: dict[str, float] = {}  # fully qualified, lower case -> monotonic
        self._reported: dict[str, Service] = {}  # instance name key -> last service_up value
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()  # names changed while being resolved
        self._published: dict[tuple[str, str], _Published] = {}
        self._own_names: set[str] = set()  # instance name keys registered here
        self._withdrawn: dict[str, float] = {}  # name key -> monotonic time of goodbye
        self._locks = KeyedLocks()
        self._background: set[Awaitable[None]] = set()
        self._pointers: SubtypePointers | None = None
        # Bursts (z2z.adapters.link.rcvbuf): sized sockets by fileno, drops seen, re-queries.
        self._sized: dict[int, int] = {}
        self.reconciler = Reconciler()
        self._reconcile_task: asyncio.Task[None] | None = None

    @property
    def interfaces(self) -> list[InterfaceSpec]:
        """What python-zeroconf was given: IPv4 addresses and IPv6 interface indexes."""
        return list(self._specs)

    # -- lifecycle ---------------------------------------------------------

    async def start(self, types: Sequence[str], listener: LinkListener) -> None:
        """Open the mDNS sockets and browse `types` with QM questions."""
        if self._aiozc is not None:
            raise LinkError("link already started")
        try:
            bare = [normalize_type(t) for t in types]
        except RecordError as exc:
            raise LinkError(str(exc)) from None
        self._listener = listener
        try:
            zc = MendedZeroconf(interfaces=list(self._specs), ip_version=self._ip_version)
            aiozc = AsyncZeroconf(zc=zc)
        except (OSError, RuntimeError) as exc:
            raise LinkError(f"cannot open mDNS sockets on {self._specs}: {exc}") from exc
        try:
            await aiozc.zeroconf.async_wait_for_start()
        except (NotRunningException, TimeoutError) as exc:
            await aiozc.async_close()
            raise LinkError(f"mDNS did not start on {self._specs}: {exc!r}") from exc
        if not aiozc.zeroconf.engine.senders:
            await aiozc.async_close()
            raise LinkError(f"no interface of {self._specs} could send mDNS")
        self._aiozc = aiozc
        self._pointers = SubtypePointers(aiozc.zeroconf)
        self._subtype_owners = SubtypeOwners()
        aiozc.zeroconf.async_add_listener(self._subtype_owners, None)
        self._types = {}
        self._size_buffers()
        self._add_browser(bare)
        self._reconcile_task = asyncio.get_running_loop().create_task(
            self._reconcile_loop(), name="z2z-mdns-reconcile"
        )
        log.info("zeroconf link up on %s (%s), browsing %s", self._specs, self._ip_version.name, bare)

    async def close(self) -> None:
        """Stop browsing, send goodbyes for everything published, close the sockets."""
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            await asyncio.gather(self._reconcile_task, return_exceptions=True)
            self._reconcile_task = None
        browsers, self._browsers = self._browsers + self._subtype_browsers, []
        self._subtype_browsers = []
        for browser in browsers:
            await browser.async_cancel()
        tasks = list(self._resolving.values())
        for task in tasks:
            task.cancel()
        for entry in self._published.values():
            _cancel(entry.announcing)
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        self._resolving.clear()
        self._background.clear()
        self._published.clear()
        self._own_names.clear()
        self._reported.clear()
        self._dirty.clear()
        self._withdrawn.clear()
        if self._pointers is not None:
            self._pointers.clear_all()  # python-zeroconf does not know them: their goodbyes first
        await aiozc.async_close()  # goodbyes for all registrations, then sockets closed

    # -- bursts: receive buffers, kernel drops, reconciliation queries ------

    @property
    def kernel_drops(self) -> int:
        """mDNS datagrams the kernel dropped on our sockets since the link started."""
        return self.reconciler.drops

    def _size_buffers(self) -> None:
        """Give every mDNS socket python-zeroconf opened (and reopens) a buffer sized for bursts."""
        assert self._aiozc is not None
        for reader in self._aiozc.zeroconf.engine.readers:
            if reader.fileno in self._sized:
                continue
            granted = size_receive_buffer(reader.sock)
            self._sized[reader.fileno] = socket_inode(reader.sock)
            # Linux reports twice the size asked (bookkeeping); less means net.core.rmem_max capped it.
            if granted < RECEIVE_BUFFER:
                log.warning(
                    "mDNS receive buffer is %d bytes, not %d: bursts may be dropped; raise "
                    "net.core.rmem_max (sysctl -w net.core.rmem_max=%d) or run with CAP_NET_ADMIN",
                    granted,
                    2 * RECEIVE_BUFFER,
                    RECEIVE_BUFFER,
                )
            else:
                log.debug("mDNS receive buffer %d bytes on fd %d", granted, reader.fileno)

    async def _reconcile_loop(self) -> None:
        while self._aiozc is not None:
            await asyncio.sleep(RECONCILE_CHECK)
            self._size_buffers()
            for browser in self._browsers:  # names that came and went: python-zeroconf keeps them
                compact_query_schedule(browser)
            drops = socket_drops(self._sized.values())
            if self.reconciler.due(drops, time.monotonic()):
                self.requery()

    def requery(self) -> None:
        """Ask the link again for every browsed type, with python-zeroconf's own query
        (known answers included, so responders answer only what we lack)."""
        now = current_time_millis()
        for browser in self._browsers:
            browser.query_scheduler.async_send_ready_queries(False, now, set(browser.types))

    # -- browsing ----------------------------------------------------------

    def _add_browser(self, bare: Sequence[str]) -> None:
        assert self._aiozc is not None
        new = {f"{t}{LOCAL_SUFFIX}": t for t in bare if f"{t}{LOCAL_SUFFIX}" not in self._types}
        if not new:
            return
        self._types.update(new)
        self._browsing_since.update(dict.fromkeys(new, time.monotonic()))
        self._browsers.append(
            AsyncServiceBrowser(
                self._aiozc.zeroconf,
                list(new),
                handlers=[self._on_state_change],
                question_type=DNSQuestionType.QM,
            )
        )
        self._add_subtype_browser(new)

    def _add_subtype_browser(self, types: dict[str, str]) -> None:
        """Browse the configured subtypes of `types` (fully qualified -> bare)."""
        assert self._aiozc is not None
        subtype_names = [f"{sub}._sub.{fq}" for fq, t in types.items() for sub in self._subtypes.get(t, ())]
        if subtype_names:
            self._subtype_browsers.append(
                AsyncServiceBrowser(
                    self._aiozc.zeroconf,
                    subtype_names,
                    handlers=[self._on_subtype_change],
                    question_type=DNSQuestionType.QM,
                )
            )

    def _on_subtype_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """A subtype PTR came or went: resolve the instance again if it is known (on the loop).

        `service_type` is the subtype name (python-zeroconf passes keyword arguments).
        """
        key = name.lower()
        if key in self._own_names or (key not in self._reported and key not in self._resolving):
            return  # unknown instances get their subtypes when their own PTR is resolved
        fq_type = service_type.split("._sub.", 1)[1]
        if state_change is ServiceStateChange.Removed:
            # A goodbye leaves the PTR cached for one more second (RFC 6762 §10.1).
            loop = asyncio.get_running_loop()
            loop.call_later(GOODBYE_S, self._re_resolve, fq_type, name, key)
        else:
            self._re_resolve(fq_type, name, key)

    def _re_resolve(self, fq_type: str, name: str, key: str) -> None:
        if self._aiozc is None or key in self._own_names:
            return
        if key in self._resolving:
            self._dirty.add(key)
        elif key in self._reported:
            self._resolving[key] = asyncio.get_running_loop().create_task(
                self._resolve(fq_type, name, key), name=f"z2z-resolve {name}"
            )

    async def set_subtypes(self, names: Sequence[str]) -> None:
        """Browse exactly the subtypes `names` from now on (a reload); see `SubtypeBrowsing`.

        The subtype browsers are replaced; a newly browsed subtype PTR of a known
        instance re-resolves it (`_on_subtype_change`).  Any ``_sub`` PTR the link
        announces unasked still counts (passive learning), configured or not.
        """
        self._require_started()
        subtypes = subtypes_by_type(names)
        old, self._subtype_browsers = self._subtype_browsers, []
        for browser in old:
            await browser.async_cancel()
        self._subtypes = subtypes
        self._add_subtype_browser(dict(self._types))
        log.info("browsing subtypes %s", sorted(names))

    async def browse(self, types: Sequence[str]) -> None:
        """Browse more types on the running link (discovered ones, or added by a reload)."""
        self._require_started()
        try:
            bare = [normalize_type(t) for t in types]
        except RecordError as exc:
            raise LinkError(str(exc)) from None
        self._add_browser(bare)

    async def discover_types(self, on_type: Callable[[str], None]) -> None:
        """Call `on_type(bare type)` for every service type announced on the link, now and later.

        This is DNS-SD's type enumeration: a browse of `META_QUERY` (RFC 6763 §9),
        answered with one PTR per type by every responder on the link.
        """
        aiozc = self._require_started()

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is not ServiceStateChange.Added:
                return
            try:
                bare = normalize_type(name)
            except RecordError:
                log.debug("ignoring odd service type %r on the link", name)
                return
            call_safely(on_type, bare)

        self._browsers.append(
            AsyncServiceBrowser(
                aiozc.zeroconf,
                [META_QUERY],
                handlers=[on_change],
                question_type=DNSQuestionType.QM,
            )
        )

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser callback (on the loop): start or cancel resolution; never blocks."""
        key = name.lower()
        if key in self._own_names:
            return
        if state_change is ServiceStateChange.Removed:
            task = self._resolving.pop(key, None)
            if task is not None:
                task.cancel()
            self._dirty.discard(key)
            gone = self._reported.pop(key, None)
            if gone is not None and self._listener is not None:
                call_safely(self._listener.service_down, gone.type, gone.instance)
            return
        if key in self._resolving:
            self._dirty.add(key)  # the running task resolves once more when done
            return
        self._resolving[key] = asyncio.get_running_loop().create_task(
            self._resolve(service_type, name, key), name=f"z2z-resolve {name}"
        )

    async def _resolve(self, service_type: str, name: str, key: str) -> None:
        """Resolve `name` until it stops changing; report it when its value changed."""
        try:
            while True:
                self._dirty.discard(key)
                service = await self._resolve_once(service_type, name)
                if (
                    service is not None
                    and key not in self._own_names
                    and self._reported.get(key) != service
                    and self._listener is not None
                ):
                    self._reported[key] = service
                    call_safely(self._listener.service_up, service)
                if key not in self._dirty:
                    return
        except Exception:  # one odd service must not stop the others
            log.exception("resolving %r failed", name)
        finally:
            if self._resolving.get(key) is asyncio.current_task():
                del self._resolving[key]

    async def _resolve_once(self, service_type: str, name: str) -> Service | None:
        """Ask for SRV/TXT/A/AAAA (QM), retrying; None when it cannot be resolved."""
        aiozc = self._aiozc
        bare = self._types.get(service_type.lower())
        if aiozc is None or bare is None:
            return None
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            try:
                info = AsyncServiceInfo(service_type, name)
                found = await info.async_request(
                    aiozc.zeroconf, self._resolve_timeout_ms, question_type=DNSQuestionType.QM
                )
            except BadTypeInNameException as exc:
                if self._listener is not None:
                    call_safely(self._listener.service_refused, name, f"bad name: {exc}")
                return None
            if found:
                try:
                    subtypes = cached_subtypes(aiozc.zeroconf, self._subtype_owners, bare, info.name)
                    return replace(service_from_info(bare, info), subtypes=subtypes)
                except ValueError as exc:
                    if self._listener is not None:
                        call_safely(self._listener.service_refused, name, str(exc))
                    return None
            log.debug("no answer resolving %r (attempt %d)", name, attempt)
        log.warning("could not resolve %r after %d attempts", name, RESOLVE_ATTEMPTS)
        return None

    # -- publishing --------------------------------------------------------

    async def publish(self, service: Service) -> str:
        """Register a proxy for `service`; return the instance name in use.

        Probing.  python-zeroconf's "probe" (0.154) is three PTR queries for the
        *type* over ~1.2 s, after which it renames the instance if a PTR to the
        same name sits in its cache; host names are never probed.  When this link
        has been browsing the type for `CACHE_WARM_S`, its cache already holds
        every instance the probe could find, so we check the cache ourselves (case
        blind), rename like ``allow_name_change`` would (``Name-2``...), and
        register with ``cooperating_responders=True``: no probe delay, the first
        announcement leaves at once.  This is safe for z2z because proxied hosts
        are renamed per site (no host conflicts), the core already suffixes
        colliding instance names, and a device that starts later with our name
        sees our answer to its own probe and renames itself.  A name this link
        withdrew less than `WITHDRAW_ECHO_S` ago is published the same way (it was
        ours a moment ago).  Other types not browsed, or browsed too briefly, are
        probed normally (``allow_name_change=True``); so is everything with
        ``always_probe``.

        Publishing an already published key with other data updates the records
        in place (``async_update_service``); the same data is a no-op.
        """
        aiozc = self._require_started()
        key = service_key(service.type, service.instance)
        async with self._locks.hold(key):
            entry = self._published.get(key)
            if entry is not None:
                if entry.service != service:
                    info = self._make_info(service, entry.info.name)
                    _cancel(entry.announcing)
                    entry.announcing = self._announce(await aiozc.async_update_service(info), info)
                    entry.service, entry.info = service, info
                    self._set_subtypes(info, service)
                return entry.instance
            fq_type = f"{normalize_type(service.type)}{LOCAL_SUFFIX}"
            info = self._make_info(service, f"{service.instance}.{fq_type}")
            # A name we withdrew a moment ago (a remote service that came back) is
            # still ours: python-zeroconf's probe would find our own records and
            # rename it ``Name-2``.
            fast = not self._always_probe and (
                self._cache_is_warm(fq_type) or self._recently_withdrawn(info.key)
            )
            if fast:
                self._rename_if_taken(aiozc, info, service.instance)
            try:
                announcing = await aiozc.async_register_service(
                    info, allow_name_change=True, cooperating_responders=fast
                )
            except (
                BadTypeInNameException,
                NonUniqueNameException,
                ServiceNameAlreadyRegistered,
            ) as exc:
                raise LinkError(f"cannot publish {info.name!r}: {exc!r}") from exc
            # No packet for this name has left yet, so no echo can precede this.
            self._own_names.add(info.key)
            self._withdrawn.pop(info.key, None)
            instance = info.name[: -len(fq_type) - 1]
            self._published[key] = _Published(service, info, instance, self._announce(announcing, info))
            self._set_subtypes(info, service)
            if instance != service.instance:
                log.info("published %r as %r after a name conflict", service.instance, instance)
            return instance

    async def withdraw(self, service_type: str, instance: str) -> None:
        """Unregister a proxy (goodbyes go out in the background); unknown names are ignored."""
        aiozc = self._aiozc
        if aiozc is None:
            return
        key = service_key(service_type, instance)
        async with self._locks.hold(key):
            entry = self._published.pop(key, None)
            if entry is None:
                return
            _cancel(entry.announcing)
            if self._pointers is not None:
                self._pointers.clear(entry.info)
            self._own_names.discard(entry.info.key)
            self._withdrawn[entry.info.key] = time.monotonic()
            self._track(await aiozc.async_unregister_service(entry.info))

    def _set_subtypes(self, info: ServiceInfo, service: Service) -> None:
        if self._pointers is not None:
            self._pointers.set(info, service.subtypes)

    def _require_started(self) -> AsyncZeroconf:
        if self._aiozc is None:
            raise LinkError("link not started (or already closed)")
        return self._aiozc

    def _make_info(self, service: Service, name: str) -> ServiceInfo:
        if "" in service.instance.split("."):
            # python-zeroconf would write an empty label, which ends the name mid-packet:
            # no mending after the fact can recover that (the Avahi backend can publish it).
            raise LinkError(
                f"cannot publish {service.instance!r} with python-zeroconf: a leading, trailing"
                " or doubled dot in an instance name (use the Avahi backend)"
            )
        try:
            fq_type = f"{normalize_type(service.type)}{LOCAL_SUFFIX}"
            return ServiceInfo(
                fq_type,
                name,
                port=service.port,
                weight=service.weight,
                priority=service.priority,
                properties=encode_txt(service.txt),  # bytes: sent as the TXT rdata verbatim
                server=f"{service.host}{LOCAL_SUFFIX}",  # never let it default to the name
                addresses=[ipaddress.ip_address(a).packed for a in service.addresses],
                host_ttl=PROXY_HOST_TTL,
                other_ttl=PROXY_OTHER_TTL,
            )
        except (BadTypeInNameException, RecordError, ValueError, TypeError) as exc:
            raise LinkError(f"cannot publish {service.instance!r}: {exc}") from exc

    def _cache_is_warm(self, fq_type: str) -> bool:
        since = self._browsing_since.get(fq_type.lower())
        return since is not None and time.monotonic() - since >= CACHE_WARM_S

    def _rename_if_taken(self, aiozc: AsyncZeroconf, info: ServiceInfo, instance: str) -> None:
        """Pick ``instance``, ``instance-2``, ... whichever no one on the link uses."""
        n = 2
        while self._name_taken(aiozc.zeroconf, info.type, info.name, info):
            suffix = f"-{n}"
            info.name = f"{truncate_label(instance, MAX_LABEL - len(suffix))}{suffix}.{info.type}"
            n += 1

    def _recently_withdrawn(self, key: str) -> bool:
        at = self._withdrawn.get(key)
        return at is not None and time.monotonic() - at <= WITHDRAW_ECHO_S

    def _name_taken(self, zc: Zeroconf, fq_type: str, name: str, info: ServiceInfo | None = None) -> bool:
        key = name.lower()
        if zc.registry.async_get_info_name(key) is not None:
            return True
        now_s = time.monotonic()
        for old, at in list(self._withdrawn.items()):
            if now_s - at > WITHDRAW_ECHO_S:
                del self._withdrawn[old]
        if key in self._withdrawn:
            return False  # the cached PTR is our own goodbye echo
        now = current_time_millis()
        pointers = [
            rec
            for rec in zc.cache.entries_with_name(fq_type)
            if isinstance(rec, DNSPointer) and not rec.is_expired(now) and rec.alias.lower() == key
        ]
        if not pointers:
            return False
        srvs = [
            r for r in zc.cache.entries_with_name(key) if isinstance(r, DNSService) and not r.is_expired(now)
        ]
        if srvs:
            # The same proxy, still cached from a gateway that led this island before
            # (z2z hosts are per origin site): taking it over is no conflict.
            server = info.server.lower() if info is not None and info.server is not None else None
            port = info.port if info is not None else None
            return not all(r.server.lower() == server and r.port == port for r in srvs)
        # A PTR alone (PTRs live 75 minutes, SRVs 120 s): a name whose owner has said
        # nothing of its SRV for longer than that is not a claim; taking it over is how
        # a follower replaces a leader that crashed minutes ago without renaming its proxies.
        return any(now - rec.created < PROXY_HOST_TTL * 1000 for rec in pointers)

    def _announce(self, first: Awaitable[None], info: ServiceInfo) -> Awaitable[None]:
        """python-zeroconf's announcements (`first`), then `LATE_ANNOUNCEMENTS`; one task to cancel."""

        async def announce() -> None:
            await first
            for delay in LATE_ANNOUNCEMENTS:
                await asyncio.sleep(delay)
                aiozc = self._aiozc
                if aiozc is None or aiozc.zeroconf.done:
                    return
                aiozc.zeroconf.async_send(aiozc.zeroconf.generate_service_broadcast(info, None))

        return self._track(asyncio.ensure_future(announce()))

    def _track(self, awaitable: Awaitable[None]) -> Awaitable[None]:
        """Keep a broadcast task referenced until done, so close() can wait for it."""
        self._background.add(awaitable)
        if isinstance(awaitable, asyncio.Future):
            awaitable.add_done_callback(self._background.discard)
        return awaitable


def _cancel(awaitable: Awaitable[None] | None) -> None:
    if isinstance(awaitable, asyncio.Future) and not awaitable.done():
        awaitable.cancel()
