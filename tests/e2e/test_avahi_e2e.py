"""End to end with the Avahi link on both campuses: real avahi-daemons, real gateways.

Campus A's gateway finds a python-zeroconf printer through a-gw's avahi-daemon
and exports it; campus B's gateway imports it through b-gw's avahi-daemon; a
client on B lists it with ``avahi-browse`` through its own daemon, as a desktop
would.  Then b-gw's avahi-daemon is restarted and the import must come back by
itself.  The gateways are ``z2z run`` with the Avahi backend
(tests/tools/z2z_gateway.py: ``--mdns avahi``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import browse, missing_tools, parse_browse, restart_avahi, wait_for
from support.testbed import Proc, Testbed, matching

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")
pytest.importorskip("gi.repository.GLib", reason="needs python3-gi")

_missing = missing_tools()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"),
]

T = "_ipp._tcp"
TXT = ["txtvers=1", "rp=ipp/print", "note=Floor 2", "Color=T", "pdl=application/pdf,image/urf"]
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"


def gateway(tb: Testbed, host: str, site: str, rendezvous: str) -> Proc:
    """``z2z run --mdns avahi`` on `host`, talking to that host's avahi-daemon."""
    state = tb.workdir / f"state-{host}"
    proc = tb.spawn(
        host,
        [sys.executable, str(GATEWAY), "--mdns", "avahi", "run", "--public", "--site", site,
         "--interface", "lan0", "--rendezvous", rendezvous, "--type", T, "--state-dir", str(state),
         "--log-level", "debug"],
        name=f"{host}-z2z",
        env=tb.avahis[host].env,
    )  # fmt: skip
    proc.wait_line(r"avahi link up", timeout=30, stream="stderr")
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def client_sees(client: Proc, instance: str) -> list[dict]:
    return [s for s in parse_browse(client.stdout()) if s.get("instance") == instance and "host" in s]


def test_printer_crosses_campuses_through_avahi(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["a-gw", "b-gw", "b-client"])
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0])
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])
    # The client: avahi-browse through b-client's own avahi-daemon, as a desktop would.
    client = tb.spawn("b-client", ["avahi-browse", "-rpk", T], name="b-client-avahi-browse",
                      env=tb.avahis["b-client"].env)  # fmt: skip

    args = ["--name", "Campus Printer", "--type", T, "--port", "631", "--host", "printer",
            "--address", tb.node("a-printer").ipv4]  # fmt: skip
    for t in TXT:
        args += ["--txt", t]
    printer = tb.spawn_tool("a-printer", "mdns_printer", *args)
    t_reg = printer.wait_event("registered", timeout=15)["t"]
    seen = wait_for(
        "Campus Printer in b-client's avahi-browse", lambda: client_sees(client, "Campus Printer"), 30, 0.05
    )
    print(f"avahi: announce on A -> resolved by avahi-browse on B: {time.time() - t_reg:.3f} s")
    for s in seen:
        assert s["host"] == "printer-campus-a-z2z.local"
        assert s["port"] == 631
        assert s["address"] == "10.77.1.10"
        assert s["txt"] in (TXT, TXT[::-1])  # avahi 0.8 lists TXT in reverse wire order
    assert tb.ping("b-client", "10.77.1.10") is not None  # the address really reaches the printer

    # avahi-daemon on B restarts (as `systemctl restart avahi-daemon` would)
    t0 = time.monotonic()
    restart_avahi(tb, "b-gw", crash=False)
    line = gw_b.wait_line(r"re-published \d+ services in", timeout=30, stream="stderr")
    print(
        f"b-gw's avahi-daemon restarted in {time.monotonic() - t0:.2f} s; gateway {line.split('avahi: ')[-1]}"
    )
    # Only b-gw's new daemon can answer a fresh browser's questions about the proxy.
    fresh = tb.spawn_tool("b-client", "mdns_watch", "--type", T, name="b-client-fresh-watch")
    up = fresh.wait_event(matching("up", instance="Campus Printer"), timeout=20)
    assert (up["host"], up["port"], up["txt"], up["addresses"]) == (
        "printer-campus-a-z2z.local.",
        631,
        TXT,
        ["10.77.1.10"],
    )
    assert [s for s in browse(tb, "b-gw") if s.get("instance") == "Campus Printer" and "host" in s]

    # bridging goes on through the new daemon: a goodbye on A removes the import on B
    mark = fresh.mark()
    printer.stop()
    fresh.wait_event(matching("down", instance="Campus Printer"), timeout=20, after=mark)
    wait_for("Campus Printer removed in avahi-browse on B",
             lambda: [e for e in parse_browse(client.stdout()) if e.get("event") == "-"
                      and e["instance"] == "Campus Printer"], timeout=20)  # fmt: skip

    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    for gw in (gw_a, gw_b):
        assert "Traceback" not in gw.stderr(), gw.stderr()[-3000:]
    client.stop()
