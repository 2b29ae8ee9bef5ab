"""The unicast DNS-SD front end as the gateway runs it: which services, which browse prefixes.

The gateway only calls `make_dns_server` once and `dns_services` whenever its view
changes; the answering rules live in z2z.adapters.dns.zone.
"""

from __future__ import annotations

import logging

from z2z.adapters.dns import DnsSdServer, DnsSdZone, parse_listen
from z2z.adapters.dns.prefixes import interface_prefixes
from z2z.app.config import GatewayConfig
from z2z.core.bridge.bridge import Bridge
from z2z.core.records import Service

log = logging.getLogger(__name__)


def dns_services(config: GatewayConfig, bridge: Bridge) -> list[Service]:
    """Imports always; the link's own services only with `dns-local` (RFC 8766 proxy role).

    Off by default: serving the local link to whoever reaches the DNS port is a
    choice the admin makes, not a side effect of asking for remote services.
    """
    if config.dns_local:
        return bridge.catalogue()
    return [svc for _, svc in bridge.imports()]


def browse_prefixes(config: GatewayConfig) -> tuple[str, ...]:
    """`dns-prefixes`, or the prefixes of the bridged interfaces."""
    return config.dns_prefixes or interface_prefixes(config.interface)


def make_dns_server(config: GatewayConfig, bridge: Bridge) -> DnsSdServer:
    """The server for `dns-listen` (not started), its zone filled from `bridge`."""
    assert config.dns_listen is not None
    host, port = parse_listen(config.dns_listen)
    prefixes = browse_prefixes(config)
    zone = DnsSdZone(config.dns_domain, dns_services(config, bridge), browse_prefixes=prefixes)
    log.info(
        "dns-sd: %s announced under the reverse domains of %s; local services %s",
        config.dns_domain,
        ", ".join(prefixes) or "no prefix",
        "served" if config.dns_local else "not served (dns-local = false)",
    )
    return DnsSdServer(zone, host, port)
