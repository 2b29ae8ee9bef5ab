"""Unicast DNS-SD from a real gateway, asked with the real `dig`:
a printer on campus A, bridged to campus B, is found over plain DNS at B's gateway."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from support.testbed import Testbed, matching

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
        gw = tb.spawn(
            host,
            [
                sys.executable,
                "-m",
                "z2z",
                "run",
                "--public",
                "--site",
                site,
                "--interface",
                "lan0",
                "--rendezvous",
                url,
                "--type",
                T,
                "--state-dir",
                str(tb.workdir / host),
                *extra,
            ],
            name=f"{host}-z2z",
        )
        gw.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    tb.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--name",
        "Campus Printer",
        "--type",
        T,
        "--port",
        "631",
        "--host",
        "printer",
        "--address",
        "10.77.1.10",
        "--txt",
        "rp=ipp/print",
        "--txt",
        "Color=T",
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


@pytest.mark.skipif(
    shutil.which("avahi-browse") is None or shutil.which("avahi-daemon") is None,
    reason="needs avahi-daemon and avahi-utils",
)
def test_avahi_wide_area_browsing_finds_the_remote_printer(testbed: Testbed) -> None:
    """`avahi-browse -d DOMAIN`: Avahi's own wide-area DNS-SD client, pointed (through the
    client namespace's resolv.conf) at B's gateway, lists the printer of campus A."""
    tb = testbed
    dht = tb.start_dht()
    netns_etc = Path("/etc/netns") / tb.node("b-client").netns
    netns_etc.mkdir(parents=True, exist_ok=True)
    try:
        (netns_etc / "resolv.conf").write_text("nameserver 10.77.2.2\n")  # Avahi asks port 53
        avahi = tb.start_avahi("b-client", wide_area=True)
        for host, site, url, extra in (
            ("a-gw", "campus-a", dht.proxy_urls[0], ()),
            ("b-gw", "campus-b", dht.proxy_urls[1], ("--dns-listen", "10.77.2.2:53", "--dns-domain", DOMAIN)),
        ):
            gw = tb.spawn(
                host,
                [
                    sys.executable,
                    "-m",
                    "z2z",
                    "run",
                    "--public",
                    "--site",
                    site,
                    "--interface",
                    "lan0",
                    "--rendezvous",
                    url,
                    "--type",
                    T,
                    "--state-dir",
                    str(tb.workdir / host),
                    *extra,
                ],
                name=f"{host}-z2z",
            )
            gw.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
        tb.spawn_tool(
            "a-printer",
            "mdns_printer",
            "--name",
            "Campus Printer",
            "--type",
            T,
            "--port",
            "631",
            "--host",
            "printer",
            "--address",
            "10.77.1.10",
            "--txt",
            "rp=ipp/print",
        ).wait_event("registered", timeout=15)
        deadline = time.monotonic() + 30
        resolved: list[list[str]] = []
        while not resolved and time.monotonic() < deadline:
            out = tb.node("b-client").run(
                "avahi-browse", "-d", DOMAIN.rstrip("."), "-rtp", T, env=avahi.env, check=False, timeout=30
            )
            resolved = [line.split(";") for line in out.stdout.splitlines() if line.startswith("=")]
            if not resolved:
                time.sleep(1)
        assert resolved, f"avahi-browse -d found nothing:\n{out.stdout}\n{out.stderr}"
        fields = resolved[0]
        assert fields[3] == "Campus\\032Printer" and fields[5] == DOMAIN.rstrip(".")
        assert fields[6] == f"printer-campus-a-z2z.{DOMAIN.rstrip('.')}"
        assert (fields[7], fields[8]) == ("10.77.1.10", "631")
        assert '"rp=ipp/print"' in fields[9]
    finally:
        shutil.rmtree(netns_etc, ignore_errors=True)
