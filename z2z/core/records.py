"""The DNS-SD service model and its DNS wire codec.

A `Service` is one DNS-SD instance as the link sees it: PTR/SRV/TXT/A/AAAA folded
into one immutable value.  The codec turns it into a DNS message (built by dnslib,
never by hand) so that what crosses the DHT is plain DNS resource records.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dnslib import AAAA, PTR, QTYPE, RR, SRV, TXT, A, DNSBuffer, DNSError, DNSLabel, DNSRecord

from z2z.core.errors import Z2zError

LOCAL_DOMAIN = "local."
MAX_LABEL = 63
# Subtypes per service carried at most (a DHT value must stay small); real devices have 1-3.
MAX_SUBTYPES = 16
SUB = "_sub"
# TXT records beyond this are refused: a DHT value must stay small (see docs/protocol.md).
MAX_TXT_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SERVICE_TYPE = re.compile(r"^_[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?\._(?:tcp|udp)$")


class RecordError(Z2zError, ValueError):
    """A service or DNS message that z2z refuses to carry."""

    default_reason = "bad-record"


@dataclass(frozen=True, slots=True)
class Service:
    """One DNS-SD service instance, independent of any domain.

    `type` is the bare service type (``_ipp._tcp``), `instance` the user-visible
    instance label (may contain dots, spaces, any UTF-8), `host` a host label
    without domain (``printer``), `txt` the raw TXT strings in order and
    `addresses` textual IPv4/IPv6 addresses.  `subtypes` are the instance's
    DNS-SD subtype labels (``_universal`` for ``_universal._sub._ipp._tcp``,
    RFC 6763 §7.1), sorted and unique (see `subtype_set`).  `priority` and
    `weight` are the SRV record's (RFC 2782; almost always 0).  `port` may be 0:
    a service that is announced but not offered (Apple's ``_device-info._tcp``,
    the Bonjour Printing Specification's "flagship" ``_printer._tcp``).
    """

    type: str
    instance: str
    host: str
    port: int
    txt: tuple[bytes, ...] = ()
    addresses: tuple[str, ...] = ()
    subtypes: tuple[str, ...] = ()
    priority: int = 0
    weight: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.instance)


def normalize_type(value: str) -> str:
    """Accept ``_ipp._tcp``, ``_ipp._tcp.`` or ``_ipp._tcp.local.``; return ``_ipp._tcp``."""
    t = value.strip().rstrip(".")
    if t.endswith(".local"):
        t = t[: -len(".local")]
    if not _SERVICE_TYPE.match(t):
        raise RecordError(f"not a DNS-SD service type: {value!r} (expected e.g. _ipp._tcp)")
    return t.lower()


def is_routable(address: str) -> bool:
    """True for an address that means something off this link.

    Loopback, link-local, unspecified and multicast addresses are useless (or
    harmful) on another subnet, so they are never exported or imported.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def routable_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Keep routable addresses, normalised and de-duplicated, IPv4 first."""
    seen: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for a in addresses:
        if is_routable(a):
            ip = ipaddress.ip_address(a)
            seen.setdefault(str(ip), ip)
    return tuple(sorted(seen, key=lambda s: (seen[s].version, seen[s].packed)))


_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


def host_label(name: str) -> str:
    """A safe DNS host label (LDH, ≤ 63 bytes) derived from any string."""
    label = _LABEL_BAD.sub("-", name.lower().removesuffix(".").removesuffix(".local")).strip("-")
    label = re.sub(r"-{2,}", "-", label)
    return (label or "host")[:MAX_LABEL].rstrip("-") or "host"


def truncate_label(text: str, limit: int = MAX_LABEL) -> str:
    """Cut `text` so that its UTF-8 encoding fits a DNS label, on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def subtype_set(labels: Iterable[str]) -> tuple[str, ...]:
    """Subtype labels in their one canonical order: unique (case-blind, as DNS), sorted.

    Equal sets give equal `Service` values, which the dedupe and the bridge rely on.
    """
    unique: dict[str, str] = {}
    for label in labels:
        unique.setdefault(label.lower(), label)
    return tuple(unique[k] for k in sorted(unique))


def parse_subtype(name: str) -> tuple[str, str]:
    """``_universal._sub._ipp._tcp`` (``.local.`` optional) → (``_universal``, ``_ipp._tcp``)."""
    head, sep, rest = name.strip().partition(f".{SUB}.")
    if not sep:
        raise RecordError(f"not a DNS-SD subtype: {name!r} (expected e.g. _universal._sub._ipp._tcp)")
    check_subtype(head)
    return head, normalize_type(rest)


def check_subtype(label: str) -> str:
    """A subtype label as RFC 6763 §7.1 allows it: one label, 1-63 bytes, no control characters."""
    if not label or len(label.encode("utf-8")) > MAX_LABEL or _CONTROL.search(label) or "." in label:
        raise RecordError(f"bad subtype label {label!r}")
    return label


def validate(service: Service) -> Service:
    """Check a service before it is carried anywhere; raise RecordError if not fit."""
    normalize_type(service.type)
    if not service.instance:
        raise RecordError("empty instance name")
    if _CONTROL.search(service.instance):
        # RFC 6763 §4.1.1: no ASCII control characters (NUL, newline, escape...).
        raise RecordError("control character in the instance name")
    if "\ufffd" in service.instance:
        # What a lossy UTF-8 decoder (python-zeroconf's) makes of invalid bytes:
        # the name on the wire was not UTF-8, and re-announcing it would change it.
        raise RecordError("instance name is not valid UTF-8")
    if len(service.instance.encode("utf-8")) > MAX_LABEL:
        raise RecordError(f"instance name longer than {MAX_LABEL} bytes")
    if not 0 <= service.port < 65536:
        # Port 0 is a real shape: an instance announced for discovery only (_device-info._tcp).
        raise RecordError(f"port out of range: {service.port}")
    if not (0 <= service.priority < 65536 and 0 <= service.weight < 65536):
        raise RecordError(f"SRV priority/weight out of range: {service.priority}/{service.weight}")
    if sum(len(t) + 1 for t in service.txt) > MAX_TXT_BYTES:
        raise RecordError(f"TXT record larger than {MAX_TXT_BYTES} bytes")
    if any(len(t) > 255 for t in service.txt):
        raise RecordError("TXT string longer than 255 bytes")
    if len(service.subtypes) > MAX_SUBTYPES:
        raise RecordError(f"more than {MAX_SUBTYPES} subtypes")
    for label in service.subtypes:
        check_subtype(label)
    if service.subtypes != subtype_set(service.subtypes):
        raise RecordError("subtypes not in canonical order (sorted, unique)")
    return service


# ---------------------------------------------------------------------------
# DNS wire codec (dnslib)


def parse_txt(rdata: bytes) -> tuple[bytes, ...]:
    """Raw TXT rdata (length-prefixed strings) as a tuple of strings, in order.

    The single empty string RFC 6763 §6.1 requires for "no TXT data" becomes ``()``,
    as in `Service`.  Raises ValueError on malformed rdata.  Both link backends
    read TXT through it, so their views of a service are byte-equal.
    """
    if not rdata:
        return ()
    try:
        strings = tuple(bytes(s) for s in TXT.parse(DNSBuffer(rdata), len(rdata)).data)
    except DNSError as exc:
        raise ValueError(f"malformed TXT rdata: {exc}") from None
    return () if strings == (b"",) else strings


def encode_txt(strings: Sequence[bytes]) -> bytes:
    """TXT strings as raw rdata; no strings gives the one empty string DNS-SD wants."""
    buf = DNSBuffer()
    try:
        TXT(list(strings) or [b""]).pack(buf)
    except DNSError as exc:
        raise ValueError(str(exc)) from None
    return bytes(buf.data)


def _name(*labels: str | bytes) -> DNSLabel:
    """A DNSLabel from raw labels, so dots inside an instance label stay inside it."""
    return DNSLabel([lbl.encode("utf-8") if isinstance(lbl, str) else lbl for lbl in labels])


def _type_labels(service_type: str) -> list[str]:
    return service_type.split(".")


def service_to_rrs(service: Service, ttl: int = 120, domain: str = LOCAL_DOMAIN) -> list[RR]:
    """The PTR, SRV, TXT and A/AAAA records that announce `service` in `domain`.

    Each subtype adds a PTR ``<subtype>._sub.<type>.<domain>`` → instance (RFC 6763 §7.1),
    after the type's own PTR.
    """
    dom = [d for d in domain.rstrip(".").split(".") if d]
    type_name = _name(*_type_labels(service.type), *dom)
    inst_name = _name(service.instance, *_type_labels(service.type), *dom)
    host_name = _name(service.host, *dom)
    rrs = [
        RR(type_name, QTYPE.PTR, ttl=ttl, rdata=PTR(inst_name)),
        *(
            RR(_name(sub, SUB, *_type_labels(service.type), *dom), QTYPE.PTR, ttl=ttl, rdata=PTR(inst_name))
            for sub in service.subtypes
        ),
        RR(
            inst_name,
            QTYPE.SRV,
            ttl=ttl,
            rdata=SRV(service.priority, service.weight, service.port, host_name),
        ),
        RR(inst_name, QTYPE.TXT, ttl=ttl, rdata=TXT(list(service.txt) or [b""])),
    ]
    for a in service.addresses:
        ip = ipaddress.ip_address(a)
        rdata = A(str(ip)) if ip.version == 4 else AAAA(str(ip))
        rrs.append(RR(host_name, QTYPE.A if ip.version == 4 else QTYPE.AAAA, ttl=ttl, rdata=rdata))
    return rrs


def encode_service(service: Service) -> bytes:
    """The service as a DNS message (answer section only), in wire format."""
    msg = DNSRecord()
    msg.header.qr = 1
    msg.header.aa = 1
    for rr in service_to_rrs(service):
        msg.add_answer(rr)
    return bytes(msg.pack())


def decode_service(wire: bytes, service_type: str) -> Service:
    """Parse a DNS message made by `encode_service`; raise RecordError if it is not one.

    The message must hold exactly one PTR for `service_type`, the SRV and TXT of
    the instance it names, and A/AAAA for the SRV target; PTRs for subtypes
    (``<sub>._sub.<type>``) must name the same instance; anything else is refused.
    """
    try:
        msg = DNSRecord.parse(wire)
    except Exception as exc:  # dnslib raises DNSError and assorted others on garbage
        raise RecordError(f"not a DNS message: {exc}") from None
    type_labels = [lbl.encode() for lbl in _type_labels(service_type)]
    all_ptrs = [rr for rr in msg.rr if rr.rtype == QTYPE.PTR]
    ptrs = [rr for rr in all_ptrs if len(rr.rname.label) < 2 or rr.rname.label[1] != SUB.encode()]
    if len(ptrs) != 1:
        raise RecordError("expected exactly one PTR record")
    owner = list(ptrs[0].rname.label)
    if owner[: len(type_labels)] != type_labels:
        raise RecordError("PTR owner is not the service type")
    domain = owner[len(type_labels) :]
    target = list(ptrs[0].rdata.label.label)
    if len(target) != len(type_labels) + len(domain) + 1 or target[1:] != owner:
        raise RecordError("PTR target is not an instance of the service type")
    inst_labels = target
    subtypes: list[str] = []
    for rr in all_ptrs:
        if rr is ptrs[0]:
            continue
        owner_labels = list(rr.rname.label)
        if owner_labels[2:] != owner or list(rr.rdata.label.label) != inst_labels:
            raise RecordError("subtype PTR is not for the instance's type")
        try:
            subtypes.append(check_subtype(owner_labels[0].decode("utf-8")))
        except UnicodeDecodeError:
            raise RecordError("subtype label is not UTF-8") from None
    srv = txt = None
    addrs: list[str] = []
    host: list[bytes] | None = None
    for rr in msg.rr:
        if rr.rtype == QTYPE.SRV and list(rr.rname.label) == inst_labels:
            srv = rr.rdata
        elif rr.rtype == QTYPE.TXT and list(rr.rname.label) == inst_labels:
            txt = rr.rdata
    if srv is None:
        raise RecordError("no SRV record for the instance")
    host = list(srv.target.label)
    if len(host) != 1 + len(domain) or host[1:] != domain:
        raise RecordError("SRV target is not a host in the same domain")
    for rr in msg.rr:
        if rr.rtype in (QTYPE.A, QTYPE.AAAA) and list(rr.rname.label) == host:
            addrs.append(str(rr.rdata))
    try:
        instance = inst_labels[0].decode("utf-8")
        host_lbl = host[0].decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("instance or host name is not UTF-8") from None
    strings = tuple(bytes(s) for s in (txt.data if txt is not None else []))
    if strings == (b"",):
        strings = ()
    return validate(
        Service(
            type=service_type,
            instance=instance,
            host=host_lbl,
            port=int(srv.port),
            txt=strings,
            addresses=tuple(addrs),
            subtypes=subtype_set(subtypes),
            priority=int(srv.priority),
            weight=int(srv.weight),
        )
    )
