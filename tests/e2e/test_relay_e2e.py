"""The relay on the namespace testbed: two campuses behind NAT with the same 192.168.50.0/24.

A's printer and B's client are both 192.168.50.10 (tests/support/nat.py); the
gateways sit behind masquerading routers that forward the relay port (the
first step of docs/relay.md).  With a private network and the defaults, B's
client must find A's printer with ``avahi-browse`` (its own avahi-daemon) at
an address that works on B: an HTTP GET to what it resolved returns the
marker A's printer serves, and a 4 MB upload arrives intact (checksum).  A
peer asking A's relay for a port A does not export is refused; a gateway of
another network cannot connect at all.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import missing_tools, parse_browse, wait_for
from support.nat import RELAY_PORT, natify
from support.testbed import Proc, Testbed

from z2z.app import keys

_missing = missing_tools()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"),
]

T = "_http._tcp"
MARKER = "z2z-relay-marker-7f3a"
UPLOAD = r"""
import hashlib, json, os, sys, urllib.request
url, size = sys.argv[1], int(sys.argv[2])
body = os.urandom(size)
req = urllib.request.Request(url, data=body, method="POST")
with urllib.request.urlopen(req, timeout=30) as r:
    print(json.dumps({"sent": hashlib.sha256(body).hexdigest(), "got": r.read().decode()}))
"""


def gateway(tb: Testbed, host: str, site: str, url: str, state: Path, secret: Path, advertise: str) -> Proc:
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
            str(state),
            "--network-secret",
            str(secret),
            "--relay-advertise",
            advertise,
            "--log-level",
            "debug",
            "--anti-entropy",
            "3",
        ],
        name=f"{host}-z2z",
    )
    proc.wait_line(r"bridging _http._tcp", timeout=45, stream="stderr")
    return proc


def status(state: Path) -> dict:
    return json.loads((state / "status.json").read_text())


def seen(client: Proc, instance: str) -> list[dict]:
    return [s for s in parse_browse(client.stdout()) if s.get("instance") == instance and "host" in s]


def relay_peer(tb: Testbed, secret: Path, site_key: Path, site: str, port: int) -> dict:
    r = tb.node("b-client").run(
        sys.executable,
        str(Path(__file__).resolve().parents[1] / "tools" / "relay_peer.py"),
        "--secret",
        str(secret),
        "--site-key",
        str(site_key),
        "--site",
        site,
        "--endpoint",
        f"10.77.0.2:{RELAY_PORT}",
        "--to",
        "campus-a",
        "--instance",
        "NAT Printer",
        "--port",
        str(port),
        check=False,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_overlapping_campuses_behind_nat_reach_each_other_through_the_relay(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    natify(tb)
    a_printer, b_client = tb.node("a-printer"), tb.node("b-client")
    assert a_printer.ipv4 == b_client.ipv4 == "192.168.50.10"
    tb.start_avahis(["b-client"])
    secret = tb.workdir / "network.secret"
    keys.new_secret(secret)
    state_a, state_b = tb.workdir / "state-a", tb.workdir / "state-b"
    http = tb.spawn_tool("a-printer", "http_marker", "--port", "8080", "--marker", MARKER)
    http.wait_event("listening", timeout=10)
    tb.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--name",
        "NAT Printer",
        "--type",
        T,
        "--port",
        "8080",
        "--host",
        "printer",
        "--address",
        a_printer.ipv4,
    ).wait_event("registered", timeout=15)
    client = tb.spawn(
        "b-client", ["avahi-browse", "-rpk", T], name="b-avahi-browse", env=tb.avahis["b-client"].env
    )
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], state_a, secret, f"10.77.0.2:{RELAY_PORT}")
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], state_b, secret, f"10.77.0.3:{RELAY_PORT}")
    t0 = time.monotonic()
    found = wait_for("A's printer in avahi-browse on B", lambda: seen(client, "NAT Printer"), 60)
    print(f"relayed printer listed by avahi-browse on B in {time.monotonic() - t0:.2f} s")
    ipv4 = [s for s in found if s["proto"] == "IPv4"] or found
    shown = ipv4[0]
    # Not A's own address (on B that is the client itself): B's gateway, which relays.
    assert shown["address"] == tb.node("b-gw").ipv4 != a_printer.ipv4, found

    code, body = tb.http_get("b-client", f"http://{shown['address']}:{shown['port']}/", timeout=10)
    assert (code, body) == (200, MARKER)
    r = b_client.run(
        sys.executable, "-c", UPLOAD, f"http://{shown['address']}:{shown['port']}/", str(4 << 20), timeout=60
    )
    upload = json.loads(r.stdout)
    assert upload["got"] == upload["sent"], upload

    def relayed() -> dict | None:  # status.json is written once a second
        relay = status(state_b)["relay"]
        routes = [(i["instance"], i["route"], i["reason"]) for i in relay["imports"]]
        return relay if routes == [("NAT Printer", "relay", "overlap")] else None

    relay = wait_for("B's status to say the printer is relayed because of overlap", relayed, 5)
    assert relay["sites"]["campus-a"] == {"endpoint": f"10.77.0.2:{RELAY_PORT}", "reachable": True}

    # A member asking for a port A does not export: refused, counted and logged by A.
    answer = relay_peer(tb, secret, state_b / "site.key", "campus-b", 22)
    assert answer["ok"] is False and "not-exported" in answer["error"], answer
    gw_a.wait_line(r"relay: refused a stream \(not-exported\)", timeout=10, stream="stderr")
    answer = relay_peer(tb, secret, state_b / "site.key", "campus-b", 8080)
    assert answer["ok"] is True and MARKER in answer["data"], answer  # the control: the export is reachable

    # A gateway of another network (another secret): no TLS session, nothing carried.
    stranger = tb.workdir / "stranger.secret"
    keys.new_secret(stranger)
    answer = relay_peer(tb, stranger, state_b / "site.key", "campus-b", 8080)
    assert answer["ok"] is False and answer["reason"] == "relay-down", answer
    time.sleep(1.5)
    assert status(state_a)["relay"]["refused"].get("not-exported", 0) >= 1

    # The relay path goes (A's router drops new connections to the forwarded port):
    # B withdraws the relayed printer; when the path returns, B publishes it again.
    ra = tb.node("ra")
    block = (
        "table ip z2zblock { chain relayblock { type filter hook forward priority -10; "
        f'iifname "wan0" tcp dport {RELAY_PORT} drop; }}; }}'
    )
    ra.run("sh", "-ec", f"echo '{block}' | nft -f -")
    mark = len(parse_browse(client.stdout()))
    t0 = time.monotonic()
    wait_for(
        "B to withdraw the relayed printer",
        lambda: any(
            e.get("event") == "-" and e["instance"] == "NAT Printer"
            for e in parse_browse(client.stdout())[mark:]
        ),
        40,
    )
    print(f"relay path gone: printer withdrawn on B after {time.monotonic() - t0:.2f} s")
    wait_for(
        "B's status to say hold",
        lambda: [i["route"] for i in status(state_b)["relay"]["imports"]] == ["hold"],
        5,
    )
    ra.run("nft", "delete", "table", "ip", "z2zblock")
    mark = len(parse_browse(client.stdout()))
    t0 = time.monotonic()
    back = wait_for(
        "B to publish the relayed printer again",
        lambda: [
            s
            for s in parse_browse(client.stdout())[mark:]
            if s.get("instance") == "NAT Printer" and "host" in s
        ],
        40,
    )
    print(f"relay path back: printer published on B again after {time.monotonic() - t0:.2f} s")
    code, body = tb.http_get("b-client", f"http://{back[0]['address']}:{back[0]['port']}/", timeout=10)
    assert (code, body) == (200, MARKER)
    for gw in (gw_b, gw_a):
        assert gw.stop(timeout=15) == 0
        assert "Traceback" not in gw.stderr()
