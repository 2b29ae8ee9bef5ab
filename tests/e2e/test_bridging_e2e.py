"""End to end on the namespace testbed: real mDNS on two campus LANs, real routers
that do not forward multicast, a real two-node OpenDHT network (dhtnode), two real
`z2z run` processes, a python-zeroconf printer on campus A and a client on B.

This is the proof that the gateway bridges; nothing here is simulated.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from support.testbed import Proc, Testbed, matching

from z2z.core.stages import network_id

pytestmark = pytest.mark.netns

T = "_ipp._tcp"
TXT = ["txtvers=1", "rp=ipp/print", "note=Floor 2", "Color=T", "pdl=application/pdf,image/urf"]


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, *extra: str, leads: bool = True) -> Proc:
    """Start `z2z run` on `host`; wait until it bridges (or, for a follower, until it runs)."""
    state = tb.workdir / f"state-{host}"
    proc = tb.spawn(
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
            rendezvous,
            "--type",
            T,
            "--state-dir",
            str(state),
            "--log-level",
            "debug",
            *extra,
        ],
        name=f"{host}-z2z",
    )
    proc.wait_line(r"bridging _ipp._tcp" if leads else r"started for site", timeout=30, stream="stderr")
    return proc


def printer(tb: Testbed, name: str = "Campus Printer", host: str = "a-printer") -> Proc:
    args = [
        "--name",
        name,
        "--type",
        T,
        "--port",
        "631",
        "--host",
        "printer",
        "--address",
        tb.node(host).ipv4,
    ]
    for t in TXT:
        args += ["--txt", t]
    proc = tb.spawn_tool(host, "mdns_printer", *args, name=f"{host}-{name.replace(' ', '_')}")
    proc.wait_event("registered", timeout=15)
    return proc


def check_remote_printer(tb: Testbed, event: dict) -> None:
    assert event["instance"] == "Campus Printer"
    assert event["port"] == 631
    assert event["txt"] == TXT
    assert event["addresses"] == ["10.77.1.10"]
    assert event["host"] == "printer-campus-a-z2z.local."
    # the address really reaches the printer from campus B, across the routers
    assert tb.ping("b-client", event["addresses"][0]) is not None


@pytest.mark.parametrize("kind", ["proxy", "embedded"])
def test_printer_crosses_campuses_and_leaves(testbed: Testbed, kind: str) -> None:
    tb = testbed
    dht = tb.start_dht()
    if kind == "proxy":
        urls = dht.proxy_urls  # each campus talks to its own DHT node's proxy
    else:
        urls = [f"opendht://{h}:{p}" for h, p in dht.nodes]
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    watch.wait_event("browsing")
    gw_a = gateway(tb, "a-gw", "campus-a", urls[0])
    gw_b = gateway(tb, "b-gw", "campus-b", urls[1])

    # multicast does not cross the routers: without z2z, B would never see it
    pr = printer(tb)
    t_reg = pr.events()[-1]["t"]
    up = watch.wait_event(matching("up", instance="Campus Printer"), timeout=20)
    check_remote_printer(tb, up)
    print(f"{kind}: announce on A -> visible on B: {up['t'] - t_reg:.3f} s")

    # goodbye on A -> gone on B
    mark = watch.mark()
    pr.stop()
    t_bye = next(e["t"] for e in pr.events() if e["event"] == "unregistered")
    down = watch.wait_event(matching("down", instance="Campus Printer"), timeout=20, after=mark)
    print(f"{kind}: goodbye on A -> removed on B: {down['t'] - t_bye:.3f} s")

    # a clean stop of A's gateway withdraws its export: tombstone -> goodbye on B
    mark = watch.mark()
    pr = printer(tb)
    watch.wait_event(matching("up", instance="Campus Printer"), timeout=20, after=mark)
    mark = watch.mark()
    assert gw_a.stop(timeout=15) == 0
    watch.wait_event(matching("down", instance="Campus Printer"), timeout=10, after=mark)
    if kind == "proxy":  # unless the leaders' DHT carried it, the tombstone is in the rendezvous
        versions = [e for e in tb.dht_values(dht.proxy_urls[1]) if e.service.instance == "Campus Printer"]
        assert "bridging via the leaders' DHT" in gw_a.stderr() or max(versions, key=lambda e: e.seq).gone

    # A's gateway comes back (same state dir), then B's clean stop withdraws its imports
    mark = watch.mark()
    gw_a_again = gateway(tb, "a-gw", "campus-a", urls[0])
    watch.wait_event(matching("up", instance="Campus Printer"), timeout=20, after=mark)
    mark = watch.mark()
    assert gw_b.stop(timeout=15) == 0
    watch.wait_event(matching("down", instance="Campus Printer"), timeout=10, after=mark)
    assert gw_a_again.stop(timeout=15) == 0
    assert "Traceback" not in gw_a.stderr() + gw_b.stderr() + gw_a_again.stderr()


def test_two_gateways_on_one_link_never_reexport(testbed: Testbed) -> None:
    """Two campus-A gateways and one campus-B gateway: A's printer crosses once,
    B's printer is imported on A once (only the island's leader bridges), and no
    proxy is ever exported back."""
    tb = testbed
    tb.add_host("a-gw2", "a", 3)
    tb.add_host("b-printer", "b", 10)
    dht = tb.start_dht()
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0])
    gw_a2 = gateway(tb, "a-gw2", "campus-a", dht.proxy_urls[1], leads=False)
    gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])
    watch_a = tb.spawn_tool("a-printer", "mdns_watch", "--type", T, name="a-watch")
    watch_b = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    printer(tb, "Campus Printer", "a-printer")
    printer(tb, "B Printer", "b-printer")
    watch_b.wait_event(matching("up", instance="Campus Printer"), timeout=20)
    watch_a.wait_event(matching("up", instance="B Printer"), timeout=20)
    time.sleep(3)  # give any would-be loop time to show itself
    # What is stored, read with `z2z browse` from wherever bridging now lives: the
    # rendezvous, or the leaders' own DHT once they formed it (stage 3).
    statuses = [json.loads((tb.workdir / f"state-{h}" / "status.json").read_text()) for h in ("a-gw", "b-gw")]
    if all(st["bridging_via"] == "dht" for st in statuses):
        where = f"opendht://10.77.1.2:4222?network={network_id('z2z')}"
    else:
        where = dht.proxy_urls[0]
    out = tb.node("b-client").run(
        sys.executable, "-m", "z2z", "browse", "--public", "--rendezvous", where, "--json", T, timeout=60
    )
    found = json.loads(out.stdout)
    assert {(f["site"], f["instance"]) for f in found} == {
        ("campus-a", "Campus Printer"),
        ("campus-b", "B Printer"),
    }
    assert not [f for f in found if f["host"].endswith("-z2z")]
    # campus B sees exactly one instance of A's printer
    names_b = {e["instance"] for e in watch_b.events() if e.get("event") == "up"}
    assert names_b == {"B Printer", "Campus Printer"}
    # ...and campus A sees B's printer exactly once: one leader, no duplicate import
    names_a = {e["instance"] for e in watch_a.events() if e.get("event") == "up"}
    assert names_a == {"B Printer", "Campus Printer"}
    assert "importing" not in gw_a2.stderr() and "importing 'B Printer'" in gw_a.stderr()


def test_rendezvous_outage_keeps_imports_and_catches_up(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    # Without elections the outside rendezvous stays the bridging store (no stage 3),
    # which is what this test is about; tests/e2e/test_stages_e2e.py covers the leaders' DHT.
    fast = ("--ttl", "20", "--refresh", "3", "--anti-entropy", "3", "--max-skew", "2", "--no-election")
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], *fast)
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], *fast)
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    printer(tb)
    watch.wait_event(matching("up", instance="Campus Printer"), timeout=20)
    mark = watch.mark()

    tb.stop_dht(kill=True)  # the rendezvous vanishes, with everything it stored
    printer(tb, "Second Printer")  # appears while the rendezvous is gone
    time.sleep(8)
    assert gw_a.alive and gw_b.alive
    assert not [e for e in watch.events()[mark:] if e.get("event") == "down"], "import lost in outage"
    gw_a.wait_line(r"rendezvous unreachable", timeout=10, stream="stderr")

    tb.start_dht()  # empty DHT: the gateways must re-put and re-listen by themselves
    watch.wait_event(matching("up", instance="Second Printer"), timeout=30, after=mark)
    time.sleep(24)  # beyond ttl + skew: the first printer must still be there (refreshed)
    assert not [e for e in watch.events()[mark:] if e.get("event") == "down"]
    gw_a.wait_line(r"rendezvous reachable again", timeout=5, stream="stderr")
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
