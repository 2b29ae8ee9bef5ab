"""Campuses behind NAT with the same private prefix: the testbed for the relay.

Turns a fresh `Testbed` (two routed campuses) into what two homes or two
institutions usually are: both LANs 192.168.50.0/24, each router masquerading
its LAN behind its one WAN address (10.77.0.2 for a, 10.77.0.3 for b) with
nftables, dropping what comes in from the WAN unless it belongs to a
connection from inside or to a forwarded port.  IPv6 is switched off on the
LANs, so nothing is routed around the NAT.  Every LAN host keeps its host
number: a-gw and b-gw are .2, a-printer .10; `overlap` renumbers b-client to
.10 too, the address of A's printer.
"""

from __future__ import annotations

from support.testbed import Testbed

LAN = "192.168.50"
RELAY_PORT = 4224


def _nft_rules(forward_ports: dict[int, str]) -> str:
    forwards = "".join(
        f'        iifname "wan0" tcp dport {port} dnat to {target}\n'
        for port, target in forward_ports.items()
    )
    return f"""
table ip z2znat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat;
{forwards}    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat;
        oifname "wan0" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" ct status dnat accept
        iifname "wan0" drop
    }}
}}
"""


def natify(tb: Testbed, *, client_host: int = 10, forward_relay: bool = True) -> None:
    """Renumber both campuses into 192.168.50.0/24 behind masquerading routers (see module doc).

    With `forward_relay`, each router forwards TCP `RELAY_PORT` on its WAN
    address to its gateway (the first step of docs/relay.md).
    """
    for letter in sorted(tb.campuses):
        campus = tb.campuses[letter]
        router = tb.node(campus.router)
        ns = router.ns
        ns.run("ip", "-4", "addr", "flush", "dev", "br-lan")
        ns.ip("addr", "add", f"{LAN}.1/24", "dev", "br-lan")
        ns.run("sh", "-ec", "echo 1 > /proc/sys/net/ipv6/conf/br-lan/disable_ipv6")
        router.ipv4 = f"{LAN}.1"
        gw = tb.nodes.get(f"{letter}-gw")
        ports = (
            {RELAY_PORT: f"{LAN}.{gw.ipv4.rsplit('.', 1)[1]}:{RELAY_PORT}"} if forward_relay and gw else {}
        )
        r = ns.run("sh", "-ec", f"nft -f - <<'RULES'\n{_nft_rules(ports)}\nRULES", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"nft in {campus.router}: {r.stderr.strip()}")
        for node in list(tb.nodes.values()):
            if node.campus is None or node.campus.letter != letter or node.name == campus.router:
                continue
            host = int(node.ipv4.rsplit(".", 1)[1])
            if node.name == f"{letter}-client":
                host = client_host
            node.ns.run("ip", "-4", "addr", "flush", "dev", "lan0")
            node.ns.ip("addr", "add", f"{LAN}.{host}/24", "dev", "lan0")
            node.ns.ip("route", "replace", "default", "via", f"{LAN}.1")
            node.ns.run("sh", "-ec", "echo 1 > /proc/sys/net/ipv6/conf/lan0/disable_ipv6")
            node.ipv4 = f"{LAN}.{host}"
