"""Unicast DNS-SD: serve what the gateway knows to dig, ``avahi-browse -d`` and ``dns-sd``.

`zone` answers (pure), `server` moves the bytes (asyncio), `addr` parses listen addresses.
"""

from z2z.adapters.dns.addr import parse_listen
from z2z.adapters.dns.server import DnsSdServer
from z2z.adapters.dns.zone import DnsSdZone

__all__ = ["DnsSdServer", "DnsSdZone", "parse_listen"]
