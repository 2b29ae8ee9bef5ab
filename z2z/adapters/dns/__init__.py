"""Unicast DNS-SD: serve what the gateway knows to dig, ``avahi-browse -d`` and ``dns-sd``."""

from z2z.adapters.dns.server import DnsSdServer, DnsSdZone, parse_listen

__all__ = ["DnsSdServer", "DnsSdZone", "parse_listen"]
