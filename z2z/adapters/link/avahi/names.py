"""Avahi's names and scopes, pure (tested without D-Bus).

avahi-daemon takes names in its own escaped text form and hands SRV/A/AAAA as raw
rdata; interfaces are (index, protocol) pairs in its numbering.  These helpers
translate, with dnslib for the wire format and `z2z.adapters.link.net` for ifaddr.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import avahi
import ifaddr
from dnslib import SRV, DNSBuffer, DNSError

from z2z.adapters.link.base import LinkError
from z2z.adapters.link.net import owner_of, parse_ip

__all__ = [
    "CLASS_IN",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_SRV",
    "TYPE_TXT",
    "Scope",
    "escape_label",
    "parse_address",
    "parse_srv",
    "parse_srv_fields",
    "select_scopes",
]

CLASS_IN = 1
TYPE_A, TYPE_TXT, TYPE_SRV, TYPE_AAAA = 1, 16, 33, 28


def escape_label(label: str) -> str:
    """One DNS label in avahi's textual form (``avahi_escape_label``).

    Dots and backslashes get a backslash, letters, digits, ``-`` and ``_`` stay,
    every other byte becomes ``\\DDD``, so instance names with dots or spaces
    survive the trip into a RecordBrowser name.
    """
    out: list[str] = []
    for byte in label.encode("utf-8"):
        char = chr(byte)
        if char in ".\\":
            out.append("\\" + char)
        elif char.isascii() and (char.isalnum() or char in "-_"):
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def parse_srv(rdata: bytes) -> tuple[int, list[bytes]]:
    """SRV rdata (as avahi serialises it: names uncompressed) → (port, target labels)."""
    _, _, port, labels = parse_srv_fields(rdata)
    return port, labels


def parse_srv_fields(rdata: bytes) -> tuple[int, int, int, list[bytes]]:
    """SRV rdata → (priority, weight, port, target labels); ValueError if malformed."""
    try:
        srv = SRV.parse(DNSBuffer(rdata), len(rdata))
    except (DNSError, IndexError, ValueError) as exc:
        raise ValueError(f"malformed SRV rdata: {exc}") from None
    labels = [bytes(lbl) for lbl in srv.target.label]
    if not labels or not labels[0]:
        raise ValueError("SRV target is the root")
    return int(srv.priority), int(srv.weight), int(srv.port), labels


def parse_address(rtype: int, rdata: bytes) -> str:
    """A or AAAA rdata → textual address; ValueError for anything else."""
    if rtype == TYPE_A and len(rdata) == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == TYPE_AAAA and len(rdata) == 16:
        return str(ipaddress.IPv6Address(rdata))
    raise ValueError(f"bad address rdata for type {rtype}: {rdata!r}")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where avahi browses and publishes: interface index and IP protocol, avahi's numbers.

    ``Scope(avahi.IF_UNSPEC, avahi.PROTO_UNSPEC)`` means every interface avahi-daemon
    serves (its own ``allow-interfaces``).  `name` is the interface name, checked
    against the daemon's view at start (a daemon in another network namespace has
    other interfaces, or the same names with other indexes).
    """

    index: int
    protocol: int
    name: str = ""

    def __str__(self) -> str:
        proto = {avahi.PROTO_INET: "/IPv4", avahi.PROTO_INET6: "/IPv6"}.get(self.protocol, "")
        return f"{self.name or 'all'}{proto}"


def select_scopes(interfaces: Sequence[str], adapters: Sequence[ifaddr.Adapter] | None = None) -> list[Scope]:
    """Map interface names or addresses to avahi scopes, one per interface.

    A name means both IP protocols on that interface; an address means its family
    only (both, if addresses of both families name the same interface), as with
    `ZeroconfLink`.  Empty `interfaces` means whatever avahi-daemon serves.
    Raises LinkError for a name or address no interface has.
    """
    if not interfaces:
        return [Scope(avahi.IF_UNSPEC, avahi.PROTO_UNSPEC)]
    adapters = list(ifaddr.get_adapters() if adapters is None else adapters)
    by_name = {a.name: a for a in adapters}
    available = ", ".join(sorted(by_name)) or "none"
    families: dict[int, set[int]] = {}
    names: dict[int, str] = {}
    for raw in interfaces:
        entry = raw.strip()
        wanted = parse_ip(entry)
        if wanted is None:
            adapter = by_name.get(entry)
            if adapter is None:
                raise LinkError(f"no such interface: {entry} (available: {available})")
            versions = {4, 6}
        else:
            owner = owner_of(wanted, entry, adapters)
            if owner is None:
                raise LinkError(f"no interface has address {entry} (available: {available})")
            adapter, versions = owner, {wanted.version}
        if adapter.index is None:
            raise LinkError(f"interface {adapter.name} has no index")
        families.setdefault(int(adapter.index), set()).update(versions)
        names[int(adapter.index)] = adapter.name
    protocol = {
        frozenset({4}): avahi.PROTO_INET,
        frozenset({6}): avahi.PROTO_INET6,
        frozenset({4, 6}): avahi.PROTO_UNSPEC,
    }
    return [Scope(index, protocol[frozenset(v)], names[index]) for index, v in families.items()]
