"""Addresses of this host, in one place: what the address policy never imports, what a gateway announces.

Every address helper of the adapters and the app lives here (like python-zeroconf's
`_utils/net.py`), on top of ifaddr.
"""

from __future__ import annotations

import ifaddr

from z2z.core.records import routable_addresses


def _ips(adapter: ifaddr.Adapter) -> list[str]:
    return [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips]


def all_addresses() -> list[str]:
    """Every address of every interface of this host (the address policy never imports them)."""
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        out += _ips(adapter)
    return out


def contact_address(interfaces: tuple[str, ...]) -> str:
    """Our most useful address on the bridged link(s): routable IPv4, then routable IPv6."""
    candidates: list[str] = []
    for adapter in ifaddr.get_adapters():
        ips = _ips(adapter)
        if interfaces and adapter.nice_name not in interfaces and not set(ips) & set(interfaces):
            continue
        candidates += ips
    routable = routable_addresses(candidates)
    if routable:
        return routable[0]
    return candidates[0].split("%")[0] if candidates else "127.0.0.1"
