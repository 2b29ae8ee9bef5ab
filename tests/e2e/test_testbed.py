"""Sanity of the namespace testbed itself: the ground every end-to-end test stands on.

If these fail, an end-to-end failure says nothing about z2z.  The key property
is the negative one: mDNS from campus A must not reach campus B by itself, or a
"bridged" service seen on B would prove nothing.
"""

from __future__ import annotations

import shutil
import sys
import time

import pytest
from support.netns import netns_names, netns_pids
from support.testbed import Testbed, matching

pytestmark = pytest.mark.netns

ECHO_SERVER = r"""
import socket, sys
with socket.create_server(("", int(sys.argv[1]), ), family=socket.AF_INET6, dualstack_ipv6=True) as s:
    print("listening", flush=True)
    while True:
        c, peer = s.accept()
        with c:
            while c.recv(1024):  # read to EOF first: closing on unread data sends RST
                pass
            c.sendall(b"hello " + peer[0].encode() + b"\n")
"""


def test_unicast_crosses_campuses(testbed: Testbed) -> None:
    """b-client reaches the printer on campus A over ICMP and TCP, IPv4 and IPv6."""
    printer = testbed.node("a-printer")
    assert (printer.ipv4, printer.ipv6) == ("10.77.1.10", "fd77:1::10")
    server = testbed.spawn("a-printer", [sys.executable, "-c", ECHO_SERVER, "631"])
    server.wait_line("listening", timeout=10)
    for address in (printer.ipv4, printer.ipv6):
        assert testbed.ping("b-client", address) is not None, f"ping {address}"
        reply = testbed.tcp_exchange("b-client", address, 631)
        client = testbed.node("b-client")
        expected = client.ipv4 if ":" not in address else client.ipv6
        assert reply is not None and expected in reply, f"tcp {address}: {reply!r}"
    # Routers and the wan are reachable too (the DHT lives on the wan).
    assert testbed.ping("a-gw", "10.77.0.1") is not None
    assert testbed.ping("b-gw", "fd77::1") is not None


def test_mdns_stays_on_its_lan(testbed: Testbed) -> None:
    """The printer is seen by a-gw (same LAN) but not by b-client (behind two routers)."""
    near = testbed.spawn_tool("a-gw", "mdns_watch", "--type", "_ipp._tcp")
    far = testbed.spawn_tool("b-client", "mdns_watch", "--type", "_ipp._tcp")
    near.wait_event("browsing")
    far.wait_event("browsing")
    printer = testbed.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--name",
        "Campus Printer",
        "--type",
        "_ipp._tcp",
        "--port",
        "631",
        "--txt",
        "rp=ipp/print",
        "--txt",
        "note=Room 101",
        "--txt",
        "flag",
        "--address",
        "10.77.1.10",
        "--host",
        "printer",
    )
    reg = printer.wait_event("registered", timeout=10)
    up = near.wait_event("up", timeout=10)
    assert up["instance"] == "Campus Printer"
    assert up["host"] == "printer.local."
    assert up["port"] == 631
    assert up["txt"] == ["rp=ipp/print", "note=Room 101", "flag"]
    assert up["addresses"] == ["10.77.1.10"]
    assert up["t"] >= reg["t"] - 0.05
    # Campus B hears nothing: give it well past zeroconf's first queries.
    time.sleep(2.0)
    assert [e for e in far.events() if e["event"] != "browsing"] == []

    mark = near.mark()
    printer.stop()
    assert printer.returncode == 0, printer.log_tail()
    assert [e["event"] for e in printer.events()][-2:] == ["unregistered", "closed"]
    down = near.wait_event("down", timeout=10, after=mark)
    assert down["instance"] == "Campus Printer"


def test_printer_control_mode(testbed: Testbed) -> None:
    """Announce/goodbye cycles in one printer process, timed by a watcher on the LAN."""
    watch = testbed.spawn_tool("a-gw", "mdns_watch", "--type", "_ipp._tcp")
    watch.wait_event("browsing")
    printer = testbed.spawn_tool(
        "a-printer", "mdns_printer", "--control", "--no-probe", "--txt", "a=1", stdin=True
    )
    printer.wait_event("ready")
    for i in range(2):
        mark = printer.mark()
        printer.send(f"register Bench {i}")
        reg = printer.wait_event("registered", after=mark)
        up = watch.wait_event(matching("up", instance=f"Bench {i}"))
        assert up["txt"] == ["a=1"]
        assert 0 <= up["t"] - reg["t"] < 3
        printer.send(f'{{"cmd": "update", "name": "Bench {i}", "txt": ["a=2", "b"]}}')
        upd = watch.wait_event(matching("update", instance=f"Bench {i}"))
        assert upd["txt"] == ["a=2", "b"]
        mark = printer.mark()
        printer.send(f"unregister Bench {i}")
        bye = printer.wait_event("unregistered", after=mark)
        down = watch.wait_event(matching("down", instance=f"Bench {i}"))
        assert 0 <= down["t"] - bye["t"] < 3
    printer.send("unregister nobody")
    assert printer.wait_event("error")["name"] == "nobody"
    printer.send("quit")
    assert printer.wait(10) == 0


def test_dht_reachable_from_both_gateways(testbed: Testbed) -> None:
    """Both proxies answer GET / from a-gw and b-gw with a paired node; restart works."""
    dht = testbed.start_dht(require_good=True)
    assert dht.proxy_url == "http://10.77.0.1:8080"
    assert dht.opendht_url == "opendht://10.77.0.1:4222"
    for host in ("a-gw", "b-gw"):
        for url in dht.proxy_urls:
            info = testbed.http_json(host, url + "/")
            assert info["ipv4"]["good"] >= 1, (host, url, info)
    testbed.stop_dht()
    assert testbed.http_get("a-gw", dht.proxy_url + "/", timeout=1)[0] == 0
    t0 = time.monotonic()
    testbed.start_dht()  # usable (a put succeeds) even before ipv4.good says so
    assert time.monotonic() - t0 < 10
    assert testbed.http_get("b-gw", dht.proxy_url + "/")[0] == 200


def test_close_leaves_nothing() -> None:
    """Every namespace and process of a closed testbed is gone, even forked daemons."""
    from support.testbed import skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tb = Testbed(hosts={"a-gw2": ("a", 3)})
    names = [n.netns for n in tb.nodes.values()]
    assert set(names) <= set(netns_names())
    assert tb.node("a-gw2").ipv4 == "10.77.1.3"
    # A daemon that double-forks escapes its process group; close() must still find it.
    tb.spawn("a-gw2", ["sh", "-c", "sleep 300 & sleep 300 &"]).wait(5)
    tb.spawn("wan", ["dhtnode", "-s", "-p", "4222"])
    assert netns_pids(tb.node("a-gw2").netns)
    workdir = tb.workdir
    tb.close()
    assert not set(names) & set(netns_names())
    assert not workdir.exists()


AVAHI_VERSION = r"""
import avahi, dbus
server = dbus.Interface(
    dbus.SystemBus().get_object(avahi.DBUS_NAME, avahi.DBUS_PATH_SERVER), avahi.DBUS_INTERFACE_SERVER
)
print(server.GetHostNameFqdn())
"""


@pytest.mark.skipif(
    not (shutil.which("avahi-daemon") and shutil.which("dbus-daemon")),
    reason="needs avahi-daemon and dbus-daemon (Debian packages avahi-daemon, dbus)",
)
def test_private_avahi(testbed: Testbed) -> None:
    """A private avahi-daemon per host: reachable over its own bus, heard on its LAN only."""
    avahis = testbed.start_avahis(["a-gw", "a-printer"])
    near = testbed.spawn_tool("a-gw", "mdns_watch", "--type", "_ipp._tcp")
    far = testbed.spawn_tool("b-client", "mdns_watch", "--type", "_ipp._tcp")
    far.wait_event("browsing")
    testbed.spawn(
        "a-printer",
        ["avahi-publish", "-s", "Avahi Printer", "_ipp._tcp", "631", "rp=x"],
        env=avahis["a-printer"].env,
    )
    up = near.wait_event("up", timeout=10)
    assert (up["instance"], up["host"], up["txt"]) == ("Avahi Printer", "a-printer.local.", ["rp=x"])
    assert "10.77.1.10" in up["addresses"]
    if shutil.which("avahi-browse"):
        browse = testbed.spawn("a-gw", ["avahi-browse", "-rpk", "_ipp._tcp"], env=avahis["a-gw"].env)
        # Avahi resolves with either address family, whatever the browse protocol.
        browse.wait_line(r"^=;lan0;IPv[46];Avahi\\032Printer;_ipp\._tcp;local;a-printer\.local;[^;]+;631;")
    gw = testbed.node("a-gw")
    r = gw.run(sys.executable, "-c", AVAHI_VERSION, env=avahis["a-gw"].env, check=False)
    if "No module named" not in r.stderr:  # python3-avahi/python3-dbus not installed
        assert r.stdout.strip() == "a-gw.local", r.stderr
    # Without the env a process does not reach the testbed's daemons (at most the
    # machine's avahi, which .ci/run stops).
    assert gw.run(sys.executable, "-c", AVAHI_VERSION, check=False).stdout.strip() != "a-gw.local"
    time.sleep(1.0)
    assert [e for e in far.events() if e["event"] != "browsing"] == []
