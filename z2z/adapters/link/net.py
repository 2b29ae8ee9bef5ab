"""Addresses and interfaces of this host: the one home of the ifaddr code.

Both link backends map interface names and addresses to what their library
wants, and the runtime needs this host's addresses (the address policy never
imports them) and its contact address; all of it reads ifaddr the same way, so
it lives here once (as python-zeroconf keeps its own in ``_utils/net.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import ifaddr

from z2z.core.records import routable_addresses

__all__ = [
    "IPAddress",
    "adapter_ips",
    "address_order",
    "all_addresses",
    "contact_address",
    "ip_of",
    "is_loopback",
    "owner_of",
    "parse_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def raw_address(ip: ifaddr.IP) -> str:
    """ifaddr gives IPv4 as a string and IPv6 as (address, flowinfo, scope_id)."""
    return ip.ip if isinstance(ip.ip, str) else ip.ip[0]


def ip_of(ip: ifaddr.IP) -> IPAddress:
    """One ifaddr address as an `ipaddress` object, without its ``%scope``."""
    return ipaddress.ip_address(raw_address(ip).split("%", 1)[0])


def adapter_ips(adapter: ifaddr.Adapter) -> list[IPAddress]:
    return [ip_of(ip) for ip in adapter.ips]


def is_loopback(adapter: ifaddr.Adapter) -> bool:
    return any(ip_of(ip).is_loopback for ip in adapter.ips)


def parse_ip(entry: str) -> IPAddress | None:
    """An interface spec as an address (``%scope`` dropped), or None when it is a name."""
    try:
        return ipaddress.ip_address(entry.split("%", 1)[0])
    except ValueError:
        return None


def address_order(address: str) -> tuple[int, bytes]:
    """Sort key: IPv4 before IPv6, then numerically (equal sets give equal tuples)."""
    ip = ipaddress.ip_address(address)
    return (ip.version, ip.packed)


def owner_of(wanted: IPAddress, entry: str, adapters: Sequence[ifaddr.Adapter]) -> ifaddr.Adapter | None:
    """The adapter holding `wanted`; a ``%scope`` suffix in `entry` picks among equal link-locals."""
    scope = entry.split("%", 1)[1] if "%" in entry else None
    for adapter in adapters:
        if scope is not None and scope not in (adapter.name, str(adapter.index)):
            continue
        if wanted in adapter_ips(adapter):
            return adapter
    return None


def all_addresses() -> list[str]:
    """Every address of every interface of this host (the address policy never imports them)."""
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        out += [raw_address(ip) for ip in adapter.ips]
    return out


def contact_address(interfaces: tuple[str, ...]) -> str:
    """Our most useful address on the bridged link(s): routable IPv4, then routable IPv6."""
    candidates: list[str] = []
    for adapter in ifaddr.get_adapters():
        ips = [raw_address(ip) for ip in adapter.ips]
        if interfaces and adapter.nice_name not in interfaces and not set(ips) & set(interfaces):
            continue
        candidates += ips
    routable = routable_addresses(candidates)
    if routable:
        return routable[0]
    return candidates[0].split("%")[0] if candidates else "127.0.0.1"
