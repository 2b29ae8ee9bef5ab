"""AvahiLink: pure helpers in-process, and a real avahi-daemon per namespace.

The netns tests run `AvahiLink` inside a testbed host through
tests/tools/avahi_probe.py (JSON lines, like link_probe.py for ZeroconfLink),
each host with its own avahi-daemon and D-Bus system bus (`Testbed.start_avahi`).
What they check is what other stacks see: ``avahi-browse`` through another
host's daemon, and python-zeroconf (tests/tools/mdns_watch.py) for the exact
wire order of TXT strings, which avahi 0.8's own tools display reversed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ifaddr
import pytest
from support.avahi_helpers import browse, missing_tools, restart_avahi, wait_for
from support.testbed import Proc, Testbed, matching

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")
pytest.importorskip("gi.repository.GLib", reason="needs python3-gi")

import avahi

from z2z.adapters.link import open_link
from z2z.adapters.link.avahi import (
    AvahiLink,
    Scope,
    escape_label,
    parse_address,
    parse_srv,
    select_scopes,
)
from z2z.adapters.link.base import LinkError
from z2z.adapters.link.zeroconf import ZeroconfLink

T = "_ipp._tcp"
TXT = ["txtvers=1", "rp=ipp/print", "note=Floor 2", "Color=T", "pdl=application/pdf,image/urf"]

_missing = missing_tools()
needs_avahi = pytest.mark.skipif(
    bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"
)


# ---------------------------------------------------------------------------
# pure helpers


def test_escape_label_matches_avahi() -> None:
    assert escape_label("Foo. Bar") == "Foo\\.\\032Bar"
    assert escape_label("a\\b") == "a\\\\b"
    assert escape_label("_ipp-1") == "_ipp-1"
    assert escape_label("Ü") == "\\195\\156"  # UTF-8 bytes, as avahi_escape_label writes them


def test_parse_srv_and_addresses() -> None:
    # rdata exactly as avahi-daemon 0.8 sent it over D-Bus (RecordBrowser ItemNew)
    assert parse_srv(b"\x00\x00\x00\x00\x02w\ta-printer\x05local\x00") == (631, [b"a-printer", b"local"])
    with pytest.raises(ValueError):
        parse_srv(b"\x00\x00")
    with pytest.raises(ValueError):
        parse_srv(b"\x00\x00\x00\x00\x02w\x00")  # target is the root
    assert parse_address(1, b"\nM\x01\n") == "10.77.1.10"
    assert parse_address(28, bytes.fromhex("fd770001000000000000000000000010")) == "fd77:1::10"
    with pytest.raises(ValueError):
        parse_address(1, b"\x01\x02")


def _adapter(name: str, index: int, *ips: str) -> ifaddr.Adapter:
    return ifaddr.Adapter(
        name, name,
        [ifaddr.IP((ip, 0, index) if ":" in ip else ip, 64 if ":" in ip else 24, name) for ip in ips],
        index=index,
    )  # fmt: skip


def test_select_scopes_maps_names_and_addresses() -> None:
    adapters = [
        _adapter("lo", 1, "127.0.0.1", "::1"),
        _adapter("lan0", 2, "10.77.1.2", "fd77:1::2", "fe80::2"),
        _adapter("lan1", 3, "10.77.2.2"),
    ]
    unspec, inet, inet6 = avahi.PROTO_UNSPEC, avahi.PROTO_INET, avahi.PROTO_INET6
    assert select_scopes([]) == [Scope(avahi.IF_UNSPEC, unspec)]
    assert select_scopes(["lan0"], adapters) == [Scope(2, unspec, "lan0")]
    assert select_scopes(["10.77.1.2"], adapters) == [Scope(2, inet, "lan0")]
    assert select_scopes(["fd77:1::2", "lan1"], adapters) == [
        Scope(2, inet6, "lan0"),
        Scope(3, unspec, "lan1"),
    ]
    assert select_scopes(["10.77.1.2", "fe80::2%lan0"], adapters) == [Scope(2, unspec, "lan0")]
    with pytest.raises(LinkError, match=r"no such interface: lan9 \(available: lan0, lan1, lo\)"):
        select_scopes(["lan9"], adapters)
    with pytest.raises(LinkError, match=r"no interface has address 10\.99\.0\.1"):
        select_scopes(["10.99.0.1"], adapters)


def test_open_link_modes() -> None:
    assert isinstance(open_link("zeroconf"), ZeroconfLink)
    assert isinstance(open_link("avahi"), AvahiLink)  # nothing is contacted before start()
    with pytest.raises(ValueError, match="unknown mDNS backend 'bonjour'"):
        open_link("bonjour")
    with pytest.raises(LinkError, match="no such interface"):
        open_link("avahi", ["z2z-nope0"])


# libdbus reads DBUS_SYSTEM_BUS_ADDRESS once per process: every check that
# depends on it runs in a fresh interpreter.
_CHECK = r"""
import asyncio, sys
from z2z.adapters.link import open_link
from z2z.adapters.link.avahi import AvahiLink
from z2z.adapters.link.base import LinkError

class Quiet:
    def service_up(self, s): pass
    def service_down(self, t, i): pass
    def service_refused(self, n, r): pass

print(type(open_link("auto")).__name__)
async def main():
    try:
        await AvahiLink().start(["_ipp._tcp"], Quiet())
    except LinkError as exc:
        print("LinkError:", exc)
asyncio.run(main())
"""

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>"""


def _check(bus_address: str) -> list[str]:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address}
    r = subprocess.run([sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_no_system_bus_means_zeroconf_and_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as d:
        out = _check(f"unix:path={d}/no-bus-here")
    assert out[0] == "ZeroconfLink"
    assert out[1].startswith("LinkError: cannot connect to the D-Bus system bus"), out


@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
def test_bus_without_avahi_means_zeroconf_and_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as d:
        socket = Path(d) / "bus"
        (Path(d) / "bus.conf").write_text(_BUS_CONF.format(socket=socket))
        bus = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--nopidfile", "--config-file", str(Path(d) / "bus.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not socket.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            out = _check(f"unix:path={socket}")
        finally:
            bus.terminate()
            bus.wait()
    assert out[0] == "ZeroconfLink"
    assert out[1] == (
        "LinkError: avahi-daemon is not running (org.freedesktop.Avahi is not on the D-Bus system bus);"
        " start it, or use the python-zeroconf backend (--mdns zeroconf)"
    )


# ---------------------------------------------------------------------------
# helpers for the namespace tests


def start_link(tb: Testbed, host: str, *extra: str, types: tuple[str, ...] = (T,)) -> Proc:
    """AvahiLink on `host`'s lan0, talking to `host`'s avahi-daemon."""
    args = ["--iface", "lan0", "--debug", *extra]
    for t in types:
        args += ["--type", t]
    proc = tb.spawn_tool(host, "avahi_probe", *args, env=tb.avahis[host].env, stdin=True)
    proc.wait_event("ready", timeout=15)
    return proc


def send(proc: Proc, **cmd: Any) -> None:
    proc.send(json.dumps(cmd))


def up_for(instance: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == "up" and e["service"]["instance"] == instance


def hexed(strings: list[str]) -> list[str]:
    return [s.encode().hex() for s in strings]


def proxy(
    instance: str, host: str, addresses: list[str], txt: list[str] = TXT, port: int = 631
) -> dict[str, Any]:
    return {"type": T, "instance": instance, "host": host, "port": port, "txt": hexed(txt),
            "addresses": addresses}  # fmt: skip


@pytest.fixture
def avahi_lan(testbed: Testbed) -> Iterator[Testbed]:
    """The testbed with avahi-daemon on a-gw and a-printer (campus A's LAN)."""
    testbed.start_avahis(["a-gw", "a-printer"])
    yield testbed


# ---------------------------------------------------------------------------
# (a) discovery


@needs_avahi
@pytest.mark.netns
def test_reports_lan_services_exactly(avahi_lan: Testbed) -> None:
    tb = avahi_lan
    link = start_link(tb, "a-gw")
    printer = tb.node("a-printer")

    # published by a-printer's avahi-daemon: its own host name and addresses
    odd = "Floor 2. Printer \\ Ünï"
    pub = tb.spawn("a-printer", ["avahi-publish", "-s", odd, T, "631", *TXT], env=tb.avahis["a-printer"].env)
    up = link.wait_event(up_for(odd), timeout=15)
    assert up["service"] == {
        "type": T, "instance": odd, "host": "a-printer", "port": 631, "txt": hexed(TXT),
        "addresses": [printer.ipv4, printer.ipv6],
    }  # fmt: skip

    # published by python-zeroconf beside that daemon, for another host, with given addresses
    zc = tb.spawn_tool("a-printer", "mdns_printer", "--control", "--name", "ZC Printer", "--host", "zcprint",
                       "--port", "9100", "--address", "10.77.1.50", "--address", "fd77:1::50",
                       *[a for t in reversed(TXT) for a in ("--txt", t)], stdin=True)  # fmt: skip
    up = link.wait_event(up_for("ZC Printer"), timeout=15)
    assert up["service"] == {
        "type": T, "instance": "ZC Printer", "host": "zcprint", "port": 9100, "txt": hexed(TXT[::-1]),
        "addresses": ["10.77.1.50", "fd77:1::50"],
    }  # fmt: skip
    time.sleep(1.5)  # identical records re-announced or seen on the other protocol: no new report
    assert len([e for e in link.events() if up_for("ZC Printer")(e)]) == 1

    # records change: TXT updated in place (cache flush), reported once more
    mark = link.mark()
    zc.send(json.dumps({"cmd": "update", "name": "ZC Printer", "txt": ["txtvers=1", "state=idle"]}))
    up = link.wait_event(up_for("ZC Printer"), timeout=10, after=mark)
    assert up["service"]["txt"] == hexed(["txtvers=1", "state=idle"])

    # goodbyes
    mark = link.mark()
    pub.stop()
    link.wait_event(matching("down", instance=odd), timeout=10, after=mark)
    zc.send("unregister ZC Printer")
    link.wait_event(matching("down", instance="ZC Printer"), timeout=10, after=mark)
    send(link, op="quit")
    link.wait_event("closed", timeout=10)
    assert "Traceback" not in link.stderr()


# ---------------------------------------------------------------------------
# (b) publishing


@needs_avahi
@pytest.mark.netns
def test_publishes_proxies_that_other_stacks_resolve(avahi_lan: Testbed) -> None:
    tb = avahi_lan
    link = start_link(tb, "a-gw")
    watch = tb.spawn_tool("a-printer", "mdns_watch", "--type", T)  # python-zeroconf: raw TXT order
    watch.wait_event("browsing", timeout=15)

    send(
        link,
        op="publish",
        service=proxy("Proxy Printer", "printer-campus-b-z2z", ["10.77.2.10", "fd77:2::10"]),
    )
    published = link.wait_event("published", timeout=15)
    assert published["instance"] == "Proxy Printer"
    print(f"publish() returned after {published['t'] - published['t0']:.3f} s (avahi probes the name)")

    seen = [s for s in browse(tb, "a-printer") if s.get("instance") == "Proxy Printer" and "host" in s]
    assert seen, browse(tb, "a-printer")
    for s in seen:
        assert s["host"] == "printer-campus-b-z2z.local"
        assert s["port"] == 631
        assert s["address"] in ("10.77.2.10", "fd77:2::10")
        # avahi 0.8's D-Bus API (and so avahi-browse) lists TXT in reverse wire order
        assert s["txt"] in (TXT, TXT[::-1])
    up = watch.wait_event(matching("up", instance="Proxy Printer"), timeout=15)
    assert up["txt"] == TXT  # wire order, as published
    assert (up["host"], up["port"], sorted(up["addresses"])) == (
        "printer-campus-b-z2z.local.",
        631,
        ["10.77.2.10", "fd77:2::10"],
    )
    # NO_REVERSE: the real host owns 10.77.2.10's reverse name, not the proxy
    r = tb.node("a-printer").run("avahi-resolve", "-a", "10.77.2.10", env=tb.avahis["a-printer"].env,
                                 check=False, timeout=30)  # fmt: skip
    assert "printer-campus-b-z2z" not in r.stdout

    # a second service on the same host shares its address records
    scanner_svc = proxy(
        "Proxy Scanner", "printer-campus-b-z2z", ["10.77.2.10", "fd77:2::10"], ["ty=scanner"], 8080
    )
    send(link, op="publish", service=scanner_svc)
    assert (
        link.wait_event(matching("published", asked="Proxy Scanner"), timeout=15)["instance"]
        == "Proxy Scanner"
    )
    watch.wait_event(matching("up", instance="Proxy Scanner"), timeout=15)

    # records change in place: TXT by UpdateServiceTxt, addresses in the host's group
    mark, wmark = link.mark(), watch.mark()
    busy = ["txtvers=1", "state=busy"]
    send(
        link,
        op="publish",
        service=proxy("Proxy Printer", "printer-campus-b-z2z", ["10.77.2.10", "fd77:2::10"], busy),
    )
    link.wait_event("published", timeout=15, after=mark)
    watch.wait_event(
        lambda e: e.get("instance") == "Proxy Printer" and e.get("txt") == busy, timeout=10, after=wmark
    )
    mark = link.mark()
    moved = ["10.77.2.10", "10.77.2.30", "fd77:2::10"]
    send(link, op="publish", service=proxy("Proxy Printer", "printer-campus-b-z2z", moved, busy))
    link.wait_event("published", timeout=15, after=mark)
    watch.wait_event(
        lambda e: e.get("instance") == "Proxy Printer" and sorted(e.get("addresses", [])) == moved,
        timeout=10, after=wmark,
    )  # fmt: skip
    assert not [e for e in watch.events()[wmark:] if e.get("event") == "down"]

    # a name taken on the link, in a browsed type: renamed before probing
    taken = tb.spawn(
        "a-printer", ["avahi-publish", "-s", "Busy Name", T, "631"], env=tb.avahis["a-printer"].env
    )
    link.wait_event(up_for("Busy Name"), timeout=15)
    send(link, op="publish", service=proxy("Busy Name", "other-campus-b-z2z", ["10.77.2.11"]))
    renamed = link.wait_event(matching("published", asked="Busy Name"), timeout=20)
    assert renamed["instance"] == "Busy Name #2"
    watch.wait_event(matching("up", instance="Busy Name #2"), timeout=15)
    # ... in a type the link does not browse: avahi's probe hits the owner, COLLISION, renamed
    http = tb.spawn("a-printer", ["avahi-publish", "-s", "Web Name", "_http._tcp", "80"],
                    env=tb.avahis["a-printer"].env)  # fmt: skip
    http.wait_line("Established", timeout=15)
    time.sleep(1.0)  # let caches settle, so the probe is answered (see AvahiLink._establish_loop)
    web = {**proxy("Web Name", "web-campus-b-z2z", ["10.77.2.12"]), "type": "_http._tcp"}
    send(link, op="publish", service=web)
    assert link.wait_event(matching("published", asked="Web Name"), timeout=20)["instance"] == "Web Name #2"
    assert "Established under name 'Web Name'" in http.stderr() + http.stdout()
    assert "collision" not in (http.stderr() + http.stdout()).lower()  # the owner kept its name

    # the link never reports what it publishes itself
    assert not [e for e in link.events() if e.get("event") == "up" and "Proxy" in e["service"]["instance"]]
    assert not [e for e in link.events() if up_for("Busy Name #2")(e)]
    assert [e for e in link.events() if up_for("Busy Name")(e)]  # the real one is reported

    # withdraw: goodbyes for the service; the host's addresses stay for the other service
    mark = watch.mark()
    send(link, op="withdraw", type=T, instance="Proxy Printer")
    link.wait_event("withdrawn", timeout=10)
    watch.wait_event(matching("down", instance="Proxy Printer"), timeout=10, after=mark)
    wait_for(
        "Proxy Printer gone from avahi-browse",
        lambda: not [s for s in browse(tb, "a-printer", resolve=False) if s["instance"] == "Proxy Printer"],
    )
    scanner = [s for s in browse(tb, "a-printer") if s.get("instance") == "Proxy Scanner" and "host" in s]
    assert scanner and all(s["address"] in ("10.77.2.10", "fd77:2::10") for s in scanner)
    # closing the link withdraws everything else
    mark = watch.mark()
    send(link, op="quit")
    link.wait_event("closed", timeout=10)
    watch.wait_event(matching("down", instance="Proxy Scanner"), timeout=10, after=mark)
    taken.stop()
    http.stop()
    assert "Traceback" not in link.stderr()


# ---------------------------------------------------------------------------
# (c) avahi-daemon restarts under the link


@needs_avahi
@pytest.mark.netns
def test_survives_avahi_daemon_restart(avahi_lan: Testbed) -> None:
    tb = avahi_lan
    link = start_link(tb, "a-gw")
    tb.spawn("a-printer", ["avahi-publish", "-s", "Before", T, "631", "k=v"], env=tb.avahis["a-printer"].env)
    link.wait_event(up_for("Before"), timeout=15)
    send(link, op="publish", service=proxy("Proxy Printer", "printer-campus-b-z2z", ["10.77.2.10"]))
    link.wait_event("published", timeout=15)

    mark = link.mark()
    t0 = time.monotonic()
    restart_avahi(tb, "a-gw", crash=True)  # a crash: no goodbyes, no cleanup
    t_back = time.monotonic()
    line = link.wait_line(r"re-published 1 services in", timeout=20, stream="stderr")
    print(f"avahi-daemon down and up in {t_back - t0:.2f} s; {line.split('avahi: ')[-1]}")

    # The proxy is back by itself: a fresh python-zeroconf browser asks, and only
    # a-gw's new daemon can answer (a-printer's avahi does not answer for others).
    watch = tb.spawn_tool("a-printer", "mdns_watch", "--type", T)
    up = watch.wait_event(matching("up", instance="Proxy Printer"), timeout=15)
    assert (up["host"], up["port"], up["txt"], up["addresses"]) == (
        "printer-campus-b-z2z.local.",
        631,
        TXT,
        ["10.77.2.10"],
    )
    own = [s for s in browse(tb, "a-gw") if s.get("instance") == "Proxy Printer" and "host" in s]
    assert own and own[0]["address"] == "10.77.2.10"

    # Browsing goes on: a new service is reported; the old one was never reported
    # gone, nor reported again (same records).
    tb.spawn("a-printer", ["avahi-publish", "-s", "After", T, "632"], env=tb.avahis["a-printer"].env)
    link.wait_event(up_for("After"), timeout=15, after=mark)
    time.sleep(5.5)  # past the grace after which services not seen again are reported gone
    after = link.events()[mark:]
    assert not [e for e in after if e.get("event") == "down"], after
    assert not [e for e in after if up_for("Before")(e)], after

    # and withdrawing still works on the new daemon
    mark = watch.mark()
    send(link, op="withdraw", type=T, instance="Proxy Printer")
    watch.wait_event(matching("down", instance="Proxy Printer"), timeout=10, after=mark)
    send(link, op="quit")
    link.wait_event("closed", timeout=10)
    assert "Traceback" not in link.stderr()


@needs_avahi
@pytest.mark.netns
def test_long_avahi_outage_then_recovery(avahi_lan: Testbed) -> None:
    """Away for longer than the grace: what was seen is reported gone; back: seen again.

    A proxy published while the daemon is away is remembered and appears when it
    returns.
    """
    tb = avahi_lan
    link = start_link(tb, "a-gw", "--away-grace", "2")
    tb.spawn("a-printer", ["avahi-publish", "-s", "Before", T, "631"], env=tb.avahis["a-printer"].env)
    link.wait_event(up_for("Before"), timeout=15)
    mark = link.mark()
    tb.avahis["a-gw"].daemon.stop()
    link.wait_event(matching("down", instance="Before"), timeout=10, after=mark)
    send(link, op="publish", service=proxy("Late Proxy", "late-campus-b-z2z", ["10.77.2.40"]))
    assert link.wait_event("published", timeout=10, after=mark)["instance"] == "Late Proxy"

    restart_avahi(tb, "a-gw", crash=False)
    link.wait_event(up_for("Before"), timeout=15, after=mark)
    watch = tb.spawn_tool("a-printer", "mdns_watch", "--type", T)
    up = watch.wait_event(matching("up", instance="Late Proxy"), timeout=15)
    assert (up["host"], up["addresses"]) == ("late-campus-b-z2z.local.", ["10.77.2.40"])
    send(link, op="quit")
    link.wait_event("closed", timeout=10)
    assert "Traceback" not in link.stderr()


# ---------------------------------------------------------------------------
# (d) 2,000 services through one gateway


@needs_avahi
@pytest.mark.netns
def test_two_thousand_proxies(avahi_lan: Testbed) -> None:
    """objects-per-client-max (1024) is per D-Bus connection: the pool opens more."""
    tb = avahi_lan
    count, hosts = 2000, 1000
    # The observer's cache must hold 2,000 services (avahi's default is 4,096 records).
    restart_avahi(tb, "a-printer", crash=False, extra_conf="cache-entries-max=65536")
    link = start_link(tb, "a-gw")
    t0 = time.monotonic()
    send(link, op="publish_many", count=count, hosts=hosts, prefix="Bulk", host="bulk", txt=hexed(["k=v"]))
    done = link.wait_event("published_many", timeout=90)
    assert done["count"] == count and done["renamed"] == []
    assert done["connections"] >= 3  # 2,000 service groups + 1,000 host groups > 2 × 1,000
    print(f"{count} proxies on {hosts} hosts established in {done['seconds']:.1f} s"
          f" over {done['connections']} D-Bus connections")  # fmt: skip

    def all_seen() -> bool:
        names = {
            s["instance"] for s in browse(tb, "a-printer", resolve=False) if s["instance"].startswith("Bulk ")
        }
        return len(names) == count

    wait_for(f"{count} services in a-printer's avahi-browse", all_seen, timeout=60, every=1.0)
    print(
        f"all {count} seen by avahi-browse on a-printer {time.monotonic() - t0:.1f} s after the first publish"
    )

    # Closing the link closes its D-Bus connections: avahi-daemon frees the groups
    # and sends the goodbyes by itself (withdraw one by one is tested above).
    send(link, op="quit")
    link.wait_event("closed", timeout=30)
    assert "Traceback" not in link.stderr()


# ---------------------------------------------------------------------------
# (e) the python-zeroconf backend beside a running avahi-daemon


@needs_avahi
@pytest.mark.netns
def test_zeroconf_link_beside_avahi_daemon(avahi_lan: Testbed) -> None:
    """Port 5353 shared with avahi-daemon on the same host: discovery works both ways."""
    tb = avahi_lan
    gw = tb.node("a-gw")
    # --mdns auto picks Avahi only where the daemon on the bus sees our interfaces
    # (a daemon in another network namespace has another lan0).
    pick = "from z2z.adapters.link import open_link; print(type(open_link('auto', ['lan0'])).__name__)"
    for host, expected in (("a-gw", "AvahiLink"), ("b-client", "ZeroconfLink")):
        r = tb.node(host).run(sys.executable, "-c", pick, env=tb.avahis["a-gw"].env)
        assert r.stdout.strip() == expected, (host, r.stdout, r.stderr)

    link = tb.spawn_tool("a-gw", "link_probe", "--iface", "lan0", "--type", T, stdin=True)
    link.wait_event("ready", timeout=15)

    # avahi-daemon's services on the same host, and on another one, reach ZeroconfLink
    tb.spawn("a-gw", ["avahi-publish", "-s", "Local Avahi", T, "631", *TXT], env=tb.avahis["a-gw"].env)
    tb.spawn(
        "a-printer", ["avahi-publish", "-s", "Remote Avahi", T, "632", "a=1"], env=tb.avahis["a-printer"].env
    )
    up = link.wait_event(up_for("Local Avahi"), timeout=15)
    assert up["service"] == {
        "type": T, "instance": "Local Avahi", "host": "a-gw", "port": 631, "txt": hexed(TXT),
        "addresses": [gw.ipv4, gw.ipv6],
    }  # fmt: skip
    up = link.wait_event(up_for("Remote Avahi"), timeout=15)
    assert (up["service"]["host"], up["service"]["port"]) == ("a-printer", 632)

    # ZeroconfLink's proxies reach the avahi-daemon beside it, and the one next door
    send(link, op="publish", service=proxy("ZC Proxy", "printer-campus-b-z2z", ["10.77.2.10"]))
    link.wait_event("published", timeout=15)
    for host in ("a-gw", "a-printer"):
        seen = wait_for(
            f"ZC Proxy resolved by avahi on {host}",
            lambda h=host: [s for s in browse(tb, h) if s.get("instance") == "ZC Proxy" and "host" in s],
        )
        assert {(s["host"], s["address"], s["port"]) for s in seen} == {
            ("printer-campus-b-z2z.local", "10.77.2.10", 631)
        }
        assert all(s["txt"] in (TXT, TXT[::-1]) for s in seen)
    send(link, op="quit")
    link.wait_event("closed", timeout=10)
