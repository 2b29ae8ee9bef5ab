"""Relay or not, per remote site and service: never silently wrong.

An imported service carries the exporting site's own addresses.  They are
useful on this link only if this link can reach them; otherwise a client would
talk to whatever answers at that address here (with overlapping campuses:
itself).  `decide` looks at what is known and says one of:

- ``direct``: publish the site's addresses, as without a relay;
- ``relay``: publish a proxy on this gateway, carried to the exporting site;
- ``probe``: first try a TCP connect to the service (the runtime caches it);
- ``hold``: publish nothing (the addresses are known to be wrong here, by an
  overlap or the site's own word, and a relay is impossible: no path to the
  site, a UDP service, or relaying is off in a private network's absence).
  A failed probe is not such knowledge: without a relay path it changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

MODES = ("auto", "always", "never")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Decision:
    route: str  # "direct", "relay", "probe", "hold"
    reason: str = ""  # why relay / hold: "overlap", "unreachable", "site-behind-nat", "always", ...


def overlapping(addresses: Iterable[str], prefixes: Iterable[Network]) -> list[str]:
    """The addresses that lie in one of this host's prefixes (they mean something else here)."""
    nets = list(prefixes)
    out = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if any(ip.version == n.version and ip in n for n in nets):
            out.append(a)
    return out


def private_addresses(addresses: Iterable[str]) -> list[str]:
    """Addresses that are private (RFC 1918, ULA...): reachable from elsewhere only if routed."""
    out = []
    for a in addresses:
        try:
            if ipaddress.ip_address(a).is_private:
                out.append(a)
        except ValueError:
            continue
    return out


def decide(
    mode: str,
    service_type: str,
    addresses: Iterable[str],
    *,
    local_prefixes: Iterable[Network],
    site_reachable: bool | None,
    probe: bool | None,
    relay_path: bool,
) -> Decision:
    """What to publish for one imported service; see the module doc for the routes.

    `site_reachable`: the exporting site's own word (False: its addresses are
    behind NAT), None if it said nothing.  `probe`: this gateway's cached TCP
    probe of the service (None: not probed yet).  `relay_path`: a relay
    endpoint of that site is known and this gateway can relay at all.
    """
    addrs = list(addresses)
    if mode == "never":
        return Decision("direct")
    reason = ""
    if mode == "always":
        reason = "always"
    elif overlapping(addrs, local_prefixes):
        reason = "overlap"
    elif site_reachable is False:
        reason = "site-behind-nat"
    elif relay_path and private_addresses(addrs):
        # A failed probe alone does not make the addresses wrong (a sleeping printer,
        # a filtered port): it only chooses the relay over them, so without a relay
        # path nothing is probed and the site's addresses are shown, as before relays.
        if probe is None:
            if service_type.endswith("._udp"):
                return Decision("direct")  # nothing to probe with TCP; not known to be wrong
            return Decision("probe")
        if not probe:
            reason = "unreachable"
    if not reason:
        return Decision("direct")
    if service_type.endswith("._udp"):
        return Decision("hold", f"{reason}; UDP services are not relayed")
    if not relay_path:
        return Decision("hold", f"{reason}; no relay path to the site")
    return Decision("relay", reason)
