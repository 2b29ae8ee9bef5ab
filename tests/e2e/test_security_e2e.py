"""A private network on the namespace testbed: three campuses, one real DHT, real mDNS.

Campuses a and b run gateways with the same network secret; campus c runs one
with another secret.  a's printer must reach b; c's printer must reach nobody,
c must see nothing, `z2z browse --public` (no secret) must find nothing, and
values that c (or anyone) injects under the network's keys must be refused
and counted by b.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from support.testbed import Proc, Testbed, matching

from z2z.app import keys

pytestmark = pytest.mark.netns

T = "_ipp._tcp"

INJECT = r"""
import asyncio, sys, time
from z2z.app import keys
from z2z.core.wire import envelope as protocol
from z2z.core.records import Service
from z2z.adapters.rendezvous.proxy import ProxyRendezvous
from z2z.core.security import Codec

proxy, good, other = sys.argv[1:4]
ours, theirs = Codec("z2z", keys.read_secret(good)), Codec("z2z", keys.read_secret(other))

async def main():
    rv = ProxyRendezvous(proxy)
    await rv.start()
    # 1. everything campus-c exported, copied under the private network's key
    copied = await rv.get(theirs.type_key("_ipp._tcp"))
    for v in copied:
        await rv.put(ours.type_key("_ipp._tcp"), v.id ^ 1, v.data)
    # 2. a plain (public-format) fake, claiming to be campus-a
    fake = Service("_ipp._tcp", "Finance Printer", "evil", 631, (), ("10.77.3.66",))
    env = protocol.Envelope("z2z", "campus-a", "0123456789abcdef", int(time.time() * 1000), time.time(),
                            120, False, fake)
    await rv.put(ours.type_key("_ipp._tcp"), 12345, protocol.encode(env))
    await rv.close()
    print(len(copied))

asyncio.run(main())
"""


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, secret: Path) -> Proc:
    proc = tb.spawn(
        host,
        [
            sys.executable,
            "-m",
            "z2z",
            "run",
            "--site",
            site,
            "--interface",
            "lan0",
            "--rendezvous",
            rendezvous,
            "--type",
            T,
            "--state-dir",
            str(tb.workdir / f"state-{host}"),
            "--log-level",
            "debug",
            "--network-secret",
            str(secret),
            "--no-election",
            "--anti-entropy",
            "3",
        ],
        name=f"{host}-z2z",
    )
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def printer(tb: Testbed, host: str, name: str) -> Proc:
    proc = tb.spawn_tool(
        host,
        "mdns_printer",
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
        "--txt",
        "rp=ipp/print",
        name=f"{host}-printer",
    )
    proc.wait_event("registered", timeout=15)
    return proc


def browse(tb: Testbed, host: str, proxy: str, *extra: str) -> list[dict]:
    out = tb.node(host).run(
        sys.executable, "-m", "z2z", "browse", "--rendezvous", proxy, "--json", *extra, T, timeout=60
    )
    return json.loads(out.stdout)


def status(tb: Testbed, host: str) -> dict:
    return json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())


def test_private_network_bridges_members_only(tb3: Testbed) -> None:
    tb = tb3
    dht = tb.start_dht()
    good, other = tb.workdir / "good.secret", tb.workdir / "other.secret"
    keys.new_secret(good)
    keys.new_secret(other)
    watch_b = tb.spawn_tool("b-client", "mdns_watch", "--type", T, name="b-watch")
    watch_c = tb.spawn_tool("c-client", "mdns_watch", "--type", T, name="c-watch")
    watch_b.wait_event("browsing")
    watch_c.wait_event("browsing")
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], good)
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], good)
    gw_c = gateway(tb, "c-gw", "campus-c", dht.proxy_urls[0], other)
    printer(tb, "a-printer", "Campus Printer")
    printer(tb, "c-printer", "Evil Printer")

    up = watch_b.wait_event(matching("up", instance="Campus Printer"), timeout=30)
    assert up["addresses"] == [tb.node("a-printer").ipv4]
    gw_c.wait_line(r"export new: 'Evil Printer'", timeout=20, stream="stderr")
    time.sleep(7)  # two anti-entropy rounds: whatever could leak has had the time to

    # members see each other; the stranger sees nothing and is seen by no one
    assert "Evil Printer" not in {e["instance"] for e in watch_b.events() if e.get("event") == "up"}
    assert not [e for e in watch_c.events() if e.get("event") == "up" and e["instance"] == "Campus Printer"]
    assert status(tb, "c-gw")["imported"] == []
    assert status(tb, "b-gw")["imported"] == ["Campus Printer._ipp._tcp (from campus-a)"]

    # z2z browse: with the secret, the network's services; without, nothing at all
    found = browse(tb, "b-client", dht.proxy_urls[1], "--network-secret", str(good))
    assert [(f["site"], f["instance"]) for f in found] == [("campus-a", "Campus Printer")]
    assert browse(tb, "b-client", dht.proxy_urls[1], "--public") == []
    found = browse(tb, "c-client", dht.proxy_urls[0], "--network-secret", str(other))
    assert [(f["site"], f["instance"]) for f in found] == [("campus-c", "Evil Printer")]

    # injection under the network's own key: c's values copied there, and a plain fake
    before = dict(status(tb, "b-gw")["rejected"])
    out = tb.node("c-client").run(
        sys.executable, "-c", INJECT, dht.proxy_urls[0], str(good), str(other), timeout=60
    )
    assert int(out.stdout) >= 1, out.stderr
    gw_b.wait_line(r"rejected a record \(bad-seal\)", timeout=20, stream="stderr")
    gw_b.wait_line(r"rejected a record \(not-sealed\)", timeout=20, stream="stderr")
    time.sleep(4)
    rejected = status(tb, "b-gw")["rejected"]
    assert rejected.get("bad-seal", 0) > before.get("bad-seal", 0)
    assert rejected.get("not-sealed", 0) > before.get("not-sealed", 0)
    assert status(tb, "b-gw")["imported"] == ["Campus Printer._ipp._tcp (from campus-a)"]
    names_b = {e["instance"] for e in watch_b.events() if e.get("event") == "up"}
    assert names_b == {"Campus Printer"}, names_b

    # b learned (and persisted) a's key on first use; status shows each site's own key
    known = json.loads((tb.workdir / "state-b-gw" / keys.KNOWN_SITES_FILE).read_text())
    assert known == {"campus-a": status(tb, "a-gw")["site_key"]}
    for gw in (gw_a, gw_b, gw_c):
        assert gw.stop(timeout=15) == 0
        assert "Traceback" not in gw.stderr()


def wait_for(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if cond():
                return time.monotonic() - t0
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_private_network_with_islands_leaders_dht_and_failover(testbed: Testbed) -> None:
    """Stages 1-3 in a private network: signed announcements keep a stranger on the same
    link out of the island, sealed and signed leader records build the leaders' DHT, and
    a follower sharing the site key takes over without any site refusing its key."""
    tb = testbed
    tb.add_host("a-gw2", "a", 3)
    tb.add_host("a-gw3", "a", 4)
    dht = tb.start_dht()
    good, other = tb.workdir / "good.secret", tb.workdir / "other.secret"
    keys.new_secret(good)
    keys.new_secret(other)
    site_key = tb.workdir / "campus-a.key"  # one key for the gateways of one site
    keys.load_signing_key(site_key)

    def run(host: str, site: str, url: str, secret: Path, *extra: str) -> Proc:
        state = str(tb.workdir / f"state-{host}")
        proc = tb.spawn(
            host,
            [
                sys.executable,
                "-m",
                "z2z",
                "run",
                "--site",
                site,
                "--interface",
                "lan0",
                "--rendezvous",
                url,
                "--type",
                T,
                "--state-dir",
                state,
                "--log-level",
                "debug",
                "--network-secret",
                str(secret),
                *extra,
            ],
            name=f"{host}-z2z",
        )
        proc.wait_line(r"started for site", timeout=30, stream="stderr")
        return proc

    members = ["a-gw", "a-gw2"]
    gws = {h: run(h, "campus-a", dht.proxy_urls[0], good, "--site-key", str(site_key)) for h in members}
    run("a-gw3", "intruder", dht.proxy_urls[0], other)  # same link, another network secret
    run("b-gw", "campus-b", dht.proxy_urls[1], good)
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    printer(tb, "a-printer", "Campus Printer")
    watch.wait_event(matching("up", instance="Campus Printer"), timeout=30)

    def leaders() -> list[str]:
        return [h for h in members if status(tb, h).get("bridging")]

    wait_for(lambda: len(leaders()) == 1, 15, "one leader among the members on campus A")
    wait_for(lambda: status(tb, "a-gw3").get("bridging"), 15, "the intruder to lead its own island")
    nodes = {h: status(tb, h)["node"] for h in (*members, "a-gw3")}
    island = {p["node"] for p in status(tb, members[0])["stages"]["island"]}
    assert nodes["a-gw3"] not in island, "a gateway without the secret joined the island"
    assert not {nodes["a-gw"], nodes["a-gw2"]} & {p["node"] for p in status(tb, "a-gw3")["stages"]["island"]}
    wait_for(
        lambda: status(tb, members[0])["rejected"].get("bad-announcement", 0) > 0,
        10,
        "the stranger's announcements to be refused",
    )

    # stage 3 on sealed, signed leader records
    [leader] = leaders()
    took = wait_for(
        lambda: all(status(tb, h).get("bridging_via") == "dht" for h in (leader, "b-gw")),
        40,
        "both leaders to bridge via their own DHT",
    )
    print(f"private network: leaders' DHT formed in {took:.2f} s")
    assert status(tb, leader)["stages"]["structure"] == status(tb, "b-gw")["stages"]["structure"]

    # failover: the follower signs with the same site key, so campus B keeps trusting it
    mark = watch.mark()
    gws[leader].signal(signal.SIGKILL)
    [follower] = [h for h in members if h != leader]
    wait_for(lambda: status(tb, follower).get("bridging"), 15, "the follower to take over")
    time.sleep(5)
    assert not [e for e in watch.events()[mark:] if e.get("event") == "down"]
    rejected_b = status(tb, "b-gw")["rejected"]
    assert not {r for r in rejected_b if "key-changed" in r or "signature" in r}, rejected_b
    assert status(tb, "b-gw")["imported"] == ["Campus Printer._ipp._tcp (from campus-a)"]
