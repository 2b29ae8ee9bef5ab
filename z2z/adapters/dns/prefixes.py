"""The subnets of the bridged interfaces: where RFC 6763 §11 clients look for the domain.

A client with nothing but a DNS server asks ``b._dns-sd._udp.<reverse of its
subnet>``; by default the gateway answers for the subnets of its own bridged
links (`dns-prefixes` overrides).  Link-local and loopback prefixes are left out:
no client derives a browse domain from them that a campus resolver would forward.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import ifaddr


def interface_prefixes(
    interfaces: Sequence[str], adapters: Sequence[ifaddr.Adapter] | None = None
) -> tuple[str, ...]:
    """Prefixes (``10.88.2.0/24``) of `interfaces`, by name or address; () = every interface."""
    wanted = {i.strip() for i in interfaces}
    out: dict[str, None] = {}
    for adapter in ifaddr.get_adapters() if adapters is None else adapters:
        ips = [(ip.ip if isinstance(ip.ip, str) else ip.ip[0]).split("%", 1)[0] for ip in adapter.ips]
        names = {adapter.name, adapter.nice_name, *ips}
        if wanted and not wanted & names:
            continue
        for raw, ip in zip(ips, adapter.ips, strict=True):
            try:
                net = ipaddress.ip_network(f"{raw}/{ip.network_prefix}", strict=False)
            except ValueError:
                continue
            if net.is_loopback or net.is_link_local or net.network_address.is_link_local:
                continue
            out[str(net)] = None
    return tuple(out)
