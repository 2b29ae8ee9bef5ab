"""python-zeroconf helpers for `ZeroconfLink`: interfaces, `ServiceInfo` → `Service`, and
what python-zeroconf cannot do by itself: one-label names and subtype PTRs.

* `select_interfaces` maps names and addresses to what python-zeroconf accepts;
  `service_from_info` folds a resolved `ServiceInfo` into a `Service`.

* `MendedZeroconf` mends what python-zeroconf sends: a dotted instance name,
  which it writes split at its dots, goes back into one label
  (`z2z.adapters.link.labels`), and an answer that spans packets is packed again
  so that each packet holds whole instances (`z2z.adapters.link.packing`).
* `SubtypePointers` publishes ``<subtype>._sub.<type>.local.`` PTRs for registered
  services.  python-zeroconf has no API for them (a `ServiceInfo` has one type,
  and its registry refuses a second registration of a name), but its query
  handler answers a PTR question with every `ServiceInfo` its registry lists
  under that name in `ServiceRegistry.types`.  So each subtype gets a copy of the
  service's `ServiceInfo` whose type is the subtype name, listed there only (not
  under its name or server): questions for the subtype are answered by
  python-zeroconf itself, with known-answer suppression, delays and the SRV/TXT/
  address additionals.  Announcements and goodbyes of those PTRs are sent here.
  One side effect: type enumeration (``_services._dns-sd._udp``) lists the
  subtype names too, as python-zeroconf does for its own subtype registrations.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import ifaddr
from zeroconf import (
    DNSNsec,
    DNSOutgoing,
    DNSPointer,
    DNSRecord,
    DNSService,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    ServiceInfo,
    Zeroconf,
    current_time_millis,
)
from zeroconf.const import _FLAGS_AA, _FLAGS_QR_RESPONSE, _MDNS_PORT

from z2z.adapters.link.base import LinkError, learned_subtypes
from z2z.adapters.link.labels import has_split_name, join_split_names
from z2z.adapters.link.net import address_order, is_loopback, owner_of, parse_ip
from z2z.adapters.link.packing import InstancePacker
from z2z.core.records import Service, parse_txt

__all__ = [
    "LOCAL_SUFFIX",
    "InterfaceSpec",
    "MendedZeroconf",
    "SubtypeOwners",
    "SubtypePointers",
    "cached_subtypes",
    "compact_query_schedule",
    "select_interfaces",
    "service_from_info",
]

log = logging.getLogger(__name__)

LOCAL_SUFFIX = ".local."
InterfaceSpec = str | int
# RFC 6762 §8.3: at least two announcements, one second apart.
ANNOUNCE_INTERVAL = 1.0


def _names_of(out: DNSOutgoing) -> Iterator[str]:
    """Every name python-zeroconf will write for `out`: owners and names in rdata."""
    for question in out.questions:
        yield question.name
    for record, _ in out.answers:
        yield from _record_names(record)
    for record in (*out.authorities, *out.additionals):
        yield from _record_names(record)


def _record_names(record: DNSRecord) -> Iterator[str]:
    yield record.name
    if isinstance(record, DNSPointer):
        yield record.alias
    elif isinstance(record, DNSService):
        yield record.server
    elif isinstance(record, DNSNsec):
        yield record.next_name


class _Mended:
    """Stands in for a `DNSOutgoing` in `Zeroconf.async_send`: the same packets, names mended."""

    def __init__(self, out: DNSOutgoing) -> None:
        self._out = out

    def packets(self) -> list[bytes]:
        return [join_split_names(packet) for packet in self._out.packets()]

    def __repr__(self) -> str:
        return repr(self._out)


class MendedZeroconf(Zeroconf):
    """python-zeroconf whose packets carry every instance name in one label (RFC 6763 §4.3)
    and whose answers keep each instance's records in the packet of its PTR.

    Every packet python-zeroconf sends (announcements, answers, probes, queries
    with known answers) leaves through `async_send`.  An answer too big for one
    packet is packed again by instance there (`InstancePacker`), and a packet
    holding a dotted instance name is mended (see `z2z.adapters.link.labels`).
    Reading needs no help: python-zeroconf joins labels with dots, so a query
    for the one-label name finds the registration.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packer = InstancePacker()

    def async_send(
        self,
        out: DNSOutgoing,
        addr: str | None = None,
        port: int = _MDNS_PORT,
        v6_flow_scope: tuple[()] | tuple[int, int] = (),
        transport: Any = None,
    ) -> None:
        for part in self.packer.pack(out) or (out,):
            if has_split_name(_names_of(part)):
                part = _Mended(part)  # type: ignore[assignment]
            super().async_send(part, addr, port, v6_flow_scope, transport)


# A browser's schedule is compacted once cancelled entries outnumber live ones by this much.
STALE_QUERIES_SLACK = 256


def compact_query_schedule(browser: Any) -> int:
    """Drop the cancelled PTR refreshes from a python-zeroconf browser's schedule; how many.

    python-zeroconf's `QueryScheduler` cancels a planned refresh (the PTR said
    goodbye, or a re-announcement moved its expiry) by flagging the heap entry,
    which then waits in the heap until its time comes: 75 % of the PTR's TTL, 56
    minutes for the usual 4,500 s.  On a link where names come and go, or are
    re-announced every second, that is thousands of dead entries (each keeping
    its instance name alive).  Removing them changes nothing the scheduler does:
    it skips cancelled entries anyway.  Attributes of another python-zeroconf
    version that lacks them: nothing is done.
    """
    scheduler = getattr(browser, "query_scheduler", None)
    heap = getattr(scheduler, "_query_heap", None)
    live_by_alias = getattr(scheduler, "_next_scheduled_for_alias", None)
    if not isinstance(heap, list) or not isinstance(live_by_alias, dict):
        return 0
    if len(heap) <= 2 * len(live_by_alias) + STALE_QUERIES_SLACK:
        return 0
    live = [query for query in heap if not getattr(query, "cancelled", False)]
    heapq.heapify(live)
    dropped = len(heap) - len(live)
    heap[:] = live  # in place: the scheduler holds this very list
    return dropped


def service_from_info(service_type: str, info: ServiceInfo) -> Service:
    """Fold a resolved `ServiceInfo` into a `Service` of bare type `service_type`.

    The instance is what precedes ``.<type>.local.`` in the name, so dots inside
    it survive (python-zeroconf keeps names unescaped).  Addresses are sorted so
    that the same records always give an equal value (the dedupe relies on it).
    Raises ValueError when the records do not make a service.
    """
    suffix = f".{service_type}{LOCAL_SUFFIX}"
    name = info.name
    if not name.lower().endswith(suffix.lower()) or len(name) <= len(suffix):
        raise ValueError(f"{name!r} is not an instance of {service_type}")
    if not info.server or info.port is None:
        raise ValueError(f"{name!r} has no usable SRV record")  # port 0 is fine: _device-info
    host = info.server.split(".", 1)[0]
    if not host:
        raise ValueError(f"{name!r} has an empty SRV target")
    addresses = tuple(sorted(set(info.parsed_addresses()), key=address_order))
    return Service(
        type=service_type,
        instance=name[: -len(suffix)],
        host=host,
        port=int(info.port),
        txt=parse_txt(info.text),
        addresses=addresses,
        priority=int(info.priority),
        weight=int(info.weight),
    )


def _adapter_specs(adapter: ifaddr.Adapter) -> list[InterfaceSpec]:
    """One IPv4 address and/or the IPv6 interface index for an adapter.

    One entry per family and interface: python-zeroconf opens a sender per entry,
    so listing every address of an interface would send every packet twice.  IPv6
    uses the index because multicast joins are per interface and link-local
    addresses are not unique across interfaces.
    """
    specs: list[InterfaceSpec] = []
    v4 = [ip for ip in adapter.ips if ip.is_IPv4]
    if v4:
        specs.append(str(v4[0].ip))
    if adapter.index is not None and any(ip.is_IPv6 for ip in adapter.ips):
        specs.append(int(adapter.index))
    return specs


def select_interfaces(
    interfaces: Sequence[str],
    ip_version: IPVersion | None = None,
    adapters: Sequence[ifaddr.Adapter] | None = None,
) -> tuple[list[InterfaceSpec], IPVersion]:
    """Map interface names or addresses to what python-zeroconf accepts.

    Returns IPv4 address strings and IPv6 interface indexes, and the IP version to
    use: the one asked for, else both families when both are present.  An empty
    `interfaces` means every non-loopback interface.  Raises LinkError for a name
    or address that no interface has.
    """
    adapters = list(ifaddr.get_adapters() if adapters is None else adapters)
    by_name = {a.name: a for a in adapters}
    by_name.update({a.nice_name: a for a in adapters if a.nice_name not in by_name})
    available = ", ".join(sorted({a.name for a in adapters})) or "none"

    specs: list[InterfaceSpec] = []
    if not interfaces:
        for candidate in adapters:
            if not is_loopback(candidate):
                specs += _adapter_specs(candidate)
    for raw in interfaces:
        entry = raw.strip()
        wanted = parse_ip(entry)
        if wanted is None:
            adapter = by_name.get(entry)
            if adapter is None:
                raise LinkError(f"no such interface: {entry} (available: {available})")
            found = _adapter_specs(adapter)
            if not found:
                raise LinkError(f"interface {entry} has no IP address")
            specs += found
            continue
        owner = owner_of(wanted, entry, adapters)
        if owner is None:
            raise LinkError(f"no interface has address {entry} (available: {available})")
        if wanted.version == 4:
            specs.append(str(wanted))
        elif owner.index is not None:
            specs.append(int(owner.index))

    specs = list(dict.fromkeys(specs))
    has_v4 = any(isinstance(s, str) for s in specs)
    has_v6 = any(isinstance(s, int) for s in specs)
    if ip_version is None:
        ip_version = IPVersion.All if has_v4 and has_v6 else IPVersion.V6Only if has_v6 else IPVersion.V4Only
    if ip_version is IPVersion.V4Only:
        specs = [s for s in specs if isinstance(s, str)]
    elif ip_version is IPVersion.V6Only:
        specs = [s for s in specs if isinstance(s, int)]
    if not specs:
        raise LinkError(
            f"no usable {ip_version.name} interface among {list(interfaces) or 'all'}"
            f" (available: {available})"
        )
    return specs, ip_version


# Subtype names kept per type by `SubtypeOwners` (a hostile link cannot grow it).
MAX_SUBTYPE_NAMES = 256


class SubtypeOwners(RecordUpdateListener):
    """The ``<label>._sub.<type>.local.`` names python-zeroconf has cached PTRs under, by type.

    A python-zeroconf record listener (it sees every record the link brings), so
    `cached_subtypes` looks up a handful of names instead of walking the whole
    cache for each resolve: at 5,000 services a walk per resolve cost a busy
    gateway most of a core.  Names whose records are gone are dropped on use;
    at most `MAX_SUBTYPE_NAMES` per type are kept (a hostile link cannot grow it).
    """

    def __init__(self) -> None:
        self.by_type: dict[str, set[str]] = {}

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        for update in records:
            record = update.new
            if isinstance(record, DNSPointer) and "._sub." in record.key:
                names = self.by_type.setdefault(record.key.partition("._sub.")[2], set())
                if len(names) < MAX_SUBTYPE_NAMES:
                    names.add(record.key)

    def async_update_records_complete(self) -> None:
        """Nothing to do once a packet's records are in (python-zeroconf's listener API)."""


def cached_subtypes(zc: Zeroconf, owners: SubtypeOwners, service_type: str, name: str) -> tuple[str, ...]:
    """Subtype labels of instance `name` that python-zeroconf's cache holds PTRs for.

    Every ``<label>._sub.<type>.local.`` PTR to `name` counts: answers to our subtype
    browsers and the ones devices announce unasked (passive learning).  Labels with
    a dot (python-zeroconf joins labels with dots, so they cannot be told apart)
    and expired records are left out.
    """
    fq_type = f"{service_type}.local.".lower()
    suffix_len = len(fq_type) + len("._sub.")
    wanted = name.lower()
    now = current_time_millis()
    found: list[str] = []
    names = owners.by_type.get(fq_type, set())
    for owner in list(names):
        records = zc.cache.async_entries_with_name(owner)
        if not records:
            names.discard(owner)  # expired and gone from the cache
            continue
        for record in records:
            if (
                isinstance(record, DNSPointer)
                and record.alias.lower() == wanted
                and not record.is_expired(now)
            ):
                found.append(record.name[:-suffix_len])
    return learned_subtypes(found)


class SubtypePointers:
    """The subtype PTRs of the services registered on one `Zeroconf` (see the module docstring)."""

    def __init__(self, zc: Zeroconf) -> None:
        self._zc = zc
        self._copies: dict[str, list[ServiceInfo]] = {}  # info.key -> one copy per subtype
        self._timers: set[asyncio.TimerHandle] = set()

    def labels(self, info: ServiceInfo) -> list[str]:
        return [copy.type.split(".", 1)[0] for copy in self._copies.get(info.key, [])]

    def set(self, info: ServiceInfo, labels: Sequence[str]) -> None:
        """Make `info`'s subtype PTRs exactly `labels` (after it was registered or updated)."""
        old = {copy.type.lower(): copy for copy in self._copies.pop(info.key, [])}
        copies = [self._copy(info, label) for label in labels]
        gone = [copy for key, copy in old.items() if key not in {c.type.lower() for c in copies}]
        new = [copy for copy in copies if copy.type.lower() not in old]
        for copy in old.values():
            self._unlist(copy)
        for copy in copies:
            self._zc.registry.types.setdefault(copy.type.lower(), {})[copy.key] = copy
        if copies:
            self._copies[info.key] = copies
        self._goodbye(gone)
        self._announce(new)

    def clear(self, info: ServiceInfo) -> None:
        """Withdraw `info`'s subtype PTRs (before or after the service itself)."""
        self.set(info, ())

    def clear_all(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        copies = [copy for group in self._copies.values() for copy in group]
        self._copies.clear()
        for copy in copies:
            self._unlist(copy)
        self._goodbye(copies)

    @staticmethod
    def _copy(info: ServiceInfo, label: str) -> ServiceInfo:
        return ServiceInfo(
            f"{label}._sub.{info.type}",
            info.name,
            port=info.port,
            weight=info.weight,
            priority=info.priority,
            properties=info.text,
            server=info.server,
            addresses=info.addresses_by_version(IPVersion.All),
            host_ttl=info.host_ttl,
            other_ttl=info.other_ttl,
        )

    def _unlist(self, copy: ServiceInfo) -> None:
        bucket = self._zc.registry.types.get(copy.type.lower())
        if bucket is not None and bucket.get(copy.key) is copy:
            del bucket[copy.key]
            if not bucket:
                del self._zc.registry.types[copy.type.lower()]

    def _send(self, copies: Sequence[ServiceInfo], ttl: int | None) -> None:
        if not copies or self._zc.done:
            return
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        for copy in copies:
            out.add_answer_at_time(copy.dns_pointer(override_ttl=ttl), 0)
        self._zc.async_send(out)

    def _announce(self, copies: list[ServiceInfo]) -> None:
        if not copies:
            return
        self._send(copies, None)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(ANNOUNCE_INTERVAL, self._again, copies)
        self._timers.add(timer)

    def _again(self, copies: list[ServiceInfo]) -> None:
        self._timers = {
            t for t in self._timers if not t.cancelled() and t.when() > asyncio.get_running_loop().time()
        }
        live = [c for c in copies if any(c is x for group in self._copies.values() for x in group)]
        self._send(live, None)

    def _goodbye(self, copies: list[ServiceInfo]) -> None:
        self._send(copies, 0)
