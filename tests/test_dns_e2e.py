"""Unicast DNS-SD from a real gateway, asked with the real `dig` (issue 3, part 2):
a printer on campus A, bridged to campus B, is found over plain DNS at B's gateway."""

from __future__ import annotations

import shutil
import sys

import pytest
from testbed import Testbed, matching

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (Debian package dnsutils)"),
]

T = "_ipp._tcp"
DOMAIN = "campus.example."


def dig(tb: Testbed, *args: str) -> list[str]:
    out = tb.node("b-client").run("dig", "@10.77.2.2", "-p", "53", "+short", "+time=2", "+tries=2", *args)
    return [line for line in out.stdout.splitlines() if line]


def test_dig_finds_the_remote_printer_at_bs_gateway(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    for host, site, url, extra in (
        ("a-gw", "campus-a", dht.proxy_urls[0], ()),
        ("b-gw", "campus-b", dht.proxy_urls[1], ("--dns-listen", "10.77.2.2:53", "--dns-domain", DOMAIN)),
    ):
        gw = tb.spawn(host, [sys.executable, "-m", "z2z", "run", "--site", site, "--interface", "lan0",
                             "--rendezvous", url, "--type", T, "--state-dir", str(tb.workdir / host), *extra],
                      name=f"{host}-z2z")
        gw.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    tb.spawn_tool("a-printer", "mdns_printer", "--name", "Campus Printer", "--type", T, "--port", "631",
                  "--host", "printer", "--address", "10.77.1.10", "--txt", "rp=ipp/print", "--txt", "Color=T"
                  ).wait_event("registered", timeout=15)
    watch.wait_event(matching("up", instance="Campus Printer"), timeout=20)

    assert dig(tb, "PTR", f"b._dns-sd._udp.{DOMAIN}") == [DOMAIN]
    assert dig(tb, "PTR", f"_services._dns-sd._udp.{DOMAIN}") == [f"{T}.{DOMAIN}"]
    [instance] = dig(tb, "PTR", f"{T}.{DOMAIN}")
    assert instance == f"Campus\\032Printer.{T}.{DOMAIN}"
    [srv] = dig(tb, "SRV", instance)
    prio, weight, port, target = srv.split()
    assert (port, target) == ("631", f"printer-campus-a-z2z.{DOMAIN}")
    assert dig(tb, "TXT", instance) == ['"rp=ipp/print" "Color=T"']
    assert dig(tb, "A", target) == ["10.77.1.10"]
    tcp = dig(tb, "+tcp", "PTR", f"{T}.{DOMAIN}")
    assert tcp == [instance]
    # a name that does not exist is NXDOMAIN, not an empty success
    out = tb.node("b-client").run("dig", "@10.77.2.2", "A", f"nothing.{DOMAIN}")
    assert "status: NXDOMAIN" in out.stdout
