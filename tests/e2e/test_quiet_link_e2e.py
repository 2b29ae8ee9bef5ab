"""A quiet link: an island keeps its election alive by unicast heartbeats, not by mDNS.

Three real `z2z run` gateways on campus A (python-zeroconf, then Avahi with a
real avahi-daemon per gateway) elect one leader; then, for a window, a dnslib
capture on another host of the link (tests/tools/mdns_capture.py, not
python-zeroconf) counts the packets that mention `_z2z._udp`.  Before heartbeats
every gateway announced every second (~90 packets per 30 s for three); now the
link must stay nearly silent while the island stays whole, and a crash of the
leader (no goodbye, its heartbeats stop) must still fail over within 5 s, a clean
exit within about a second.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import missing_tools
from support.testbed import Proc, Testbed

pytestmark = pytest.mark.netns

T = "_ipp._tcp"
HOSTS = ("a-gw", "a-gw2", "a-gw3")
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"
SETTLE = 40.0  # the announcement bursts are over, and the stacks' queries (1, 2, 4, … s apart) thin out
WINDOW = 30.0
MAX_PACKETS = 10  # the stacks' own upkeep (a few queries); before: ~3 per gateway per second


def gateway(tb: Testbed, host: str, rendezvous: str, backend: str) -> Proc:
    state = tb.workdir / f"state-{host}"
    args = ["run", "--public", "--site", "campus-a", "--interface", "lan0", "--rendezvous", rendezvous,
            "--type", T, "--state-dir", str(state)]  # fmt: skip
    if backend == "avahi":
        proc = tb.spawn(
            host, [sys.executable, str(GATEWAY), "--mdns", "avahi", *args], name=f"{host}-z2z",
            env=tb.avahis[host].env,
        )  # fmt: skip
    else:
        proc = tb.spawn(host, [sys.executable, "-m", "z2z", *args], name=f"{host}-z2z")
    proc.wait_line(r"started for site", timeout=30, stream="stderr")
    return proc


def status(tb: Testbed, host: str) -> dict:
    try:
        return json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("backend", ["zeroconf", "avahi"])
def test_island_stays_elected_on_a_quiet_link_and_fails_over(testbed: Testbed, backend: str) -> None:
    tb = testbed
    if backend == "avahi":
        pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
        missing = missing_tools()
        assert not missing, f"needs {', '.join(missing)}"
    tb.add_host("a-gw2", "a", 3)
    tb.add_host("a-gw3", "a", 4)
    dht = tb.start_dht()
    if backend == "avahi":
        tb.start_avahis(HOSTS)
    capture = tb.spawn_tool("a-printer", "mdns_capture", "--interface", "lan0", "--packets")
    capture.wait_event("ready", timeout=10)
    gws = {h: gateway(tb, h, dht.proxy_urls[0], backend) for h in HOSTS}

    def leaders() -> list[str]:
        return [h for h in HOSTS if status(tb, h).get("bridging")]

    wait_for(lambda: len(leaders()) == 1, 15, "exactly one leader on campus A")
    # RFC 6762: announcements (§8.3) and continuous queries (§5.2, avahi doubles 1 s … 1 h) decay
    time.sleep(SETTLE)
    [leader] = leaders()
    mark = capture.mark()
    t0 = time.monotonic()
    while time.monotonic() - t0 < WINDOW:  # the island stays whole all along, on heartbeats alone
        assert leaders() == [leader]
        for h in HOSTS:
            island = status(tb, h).get("stages", {}).get("island", [])
            assert len(island) == 2, (h, island)
        time.sleep(1.0)
    packets = [
        e
        for e in capture.events()[mark:]
        if e.get("event") == "packet" and any("_z2z" in n for n in e["names"])
    ]
    sent = sum(e["bytes"] for e in packets)
    print(f"{backend}: {len(packets)} _z2z._udp packets, {sent / WINDOW:.1f} B/s in {WINDOW:.0f} s")
    for e in packets:
        print(f"  +{e['t'] - t0:5.2f} s {e['src']} {e['bytes']} B {' '.join(e['names'])}")
    assert len(packets) <= MAX_PACKETS, f"{len(packets)} _z2z._udp packets in {WINDOW:.0f} s (listed above)"

    followers = [h for h in HOSTS if h != leader]
    gws[leader].signal(signal.SIGKILL)  # no goodbye: the heartbeats stop
    took = wait_for(
        lambda: len([h for h in followers if status(tb, h).get("bridging")]) == 1, 10, "a takeover"
    )
    print(f"{backend}: crash failover {took:.2f} s")
    assert took <= 5.0
    new_leader = next(h for h in followers if status(tb, h).get("bridging"))
    remaining = next(h for h in followers if h != new_leader)
    time.sleep(2)
    gws[new_leader].signal(signal.SIGTERM)  # a clean exit: the mDNS goodbye hands over
    took = wait_for(lambda: status(tb, remaining).get("bridging"), 10, "the last gateway to take over")
    print(f"{backend}: clean hand-over {took:.2f} s (status.json is written every second)")
    assert took <= 3.0
