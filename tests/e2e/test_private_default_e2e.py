"""Private by default, on the namespace testbed with a real two-node dhtnode.

Gateways started as the quick start says (no secret, no ``--public``) each make a
private network of their own and do not bridge; after ``z2z invite`` on A and
``z2z join CODE`` for B (before B starts) they do.  A stranger in ``--public``
mode with its own printer is not imported by a default gateway, and its values
copied under that gateway's key are refused and counted; the control (B in
``--public``) imports the stranger's printer, so the test can fail.  What B's
link shows is judged by ``avahi-browse`` through b-client's own avahi-daemon.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import missing_tools, parse_browse, wait_for
from support.testbed import Proc, Testbed

from z2z.app import keys

_missing = missing_tools()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"),
]

T = "_ipp._tcp"

# Copies what the stranger put under the public key of T to the private network's key
# of T, as anyone who watches the DHT could (it sees the keys, not what they mean).
COPY = r"""
import asyncio, sys
from z2z.app import keys
from z2z.adapters.rendezvous.proxy import ProxyRendezvous
from z2z.core.security import Codec

proxy, secret = sys.argv[1:3]
public, private = Codec("z2z"), Codec("z2z", keys.read_secret(secret))

async def main():
    rv = ProxyRendezvous(proxy)
    await rv.start()
    values = await rv.get(public.type_key("_ipp._tcp"))
    for v in values:
        await rv.put(private.type_key("_ipp._tcp"), v.id ^ 1, v.data)
    await rv.close()
    print(len(values))

asyncio.run(main())
"""


def gateway(tb: Testbed, host: str, site: str, url: str, state: Path, *extra: str) -> Proc:
    """`z2z run` as the quick start has it (private unless `extra` says --public)."""
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
            "--log-level",
            "debug",
            "--anti-entropy",
            "3",
            *extra,
        ],
        name=f"{host}-z2z-{state.name}",
    )
    proc.wait_line(r"bridging _ipp._tcp", timeout=45, stream="stderr")
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
        name=f"{host}-printer",
    )
    proc.wait_event("registered", timeout=15)
    return proc


def status(state: Path) -> dict:
    return json.loads((state / "status.json").read_text())


def avahi_browse(tb: Testbed) -> Proc:
    """avahi-browse through b-client's own avahi-daemon, as a desktop on campus B would."""
    return tb.spawn(
        "b-client", ["avahi-browse", "-rpk", T], name="b-client-avahi-browse", env=tb.avahis["b-client"].env
    )


def seen(client: Proc, instance: str) -> list[dict]:
    return [s for s in parse_browse(client.stdout()) if s.get("instance") == instance and "host" in s]


def z2z(tb: Testbed, host: str, *argv: str) -> tuple[int, str, str]:
    r = tb.node(host).run(sys.executable, "-m", "z2z", *argv, check=False, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_default_gateways_bridge_only_after_invite_and_join(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["b-client"])
    client = avahi_browse(tb)
    state_a, state_b, state_b2 = (tb.workdir / n for n in ("state-a", "state-b", "state-b-joined"))
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], state_a)
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], state_b)
    printer(tb, "a-printer", "Campus Printer")
    gw_a.wait_line(r"export new: 'Campus Printer'", timeout=20, stream="stderr")

    # two private networks of one gateway each: each says so once, with its own id
    ids = []
    for gw, state in ((gw_a, state_a), (gw_b, state_b)):
        [line] = [ln for ln in gw.stderr().splitlines() if "private network" in ln]
        assert f"`z2z invite --state-dir {state}`" in line and "z2z join CODE" in line, line
        ids.append(line.split("(id ")[1].split(",")[0])
        assert keys.read_secret(state / "network.secret")
        assert (state / "network.secret").stat().st_mode & 0o777 == 0o600
    assert ids[0] != ids[1]
    time.sleep(8)  # two anti-entropy rounds and more: whatever could cross has had the time to
    assert status(state_b)["imported"] == []
    assert not seen(client, "Campus Printer")
    assert gw_b.stop(timeout=15) == 0

    # invite on A, join for a fresh B before its first start: now one network
    rc, out, err = z2z(tb, "a-gw", "invite", "--state-dir", str(state_a))
    assert rc == 0 and "secret" in err, err
    code = out.splitlines()[-1]
    rc, out, err = z2z(tb, "b-gw", "join", code, "--state-dir", str(state_b2))
    assert rc == 0 and f"id {ids[0]}" in out, (out, err)
    gw_b2 = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], state_b2)
    t0 = time.monotonic()
    found = wait_for("Campus Printer in avahi-browse on B", lambda: seen(client, "Campus Printer"), 45)
    print(f"after join: A's printer listed by avahi-browse on B in {time.monotonic() - t0:.2f} s")
    for s in found:
        assert s["host"] == "printer-campus-a-z2z.local" and s["port"] == 631
        assert s["address"] == tb.node("a-printer").ipv4
    assert f"private network z2z (id {ids[0]}" in gw_b2.stderr()
    imported = ["Campus Printer._ipp._tcp (from campus-a)"]
    wait_for("B's status.json to list the import", lambda: status(state_b2)["imported"] == imported, 5)
    assert status(state_b2)["private"]
    # Routed campuses: relay = auto (the default) keeps the printer's own address, and says so.
    relay = status(state_b2)["relay"]
    assert relay["mode"] == "auto"
    assert [(i["instance"], i["route"]) for i in relay["imports"]] == [("Campus Printer", "direct")], relay
    for gw in (gw_a, gw_b2):
        assert gw.stop(timeout=15) == 0
        assert "Traceback" not in gw.stderr()


def test_public_stranger_is_not_imported_by_a_default_gateway(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["b-client"])
    client = avahi_browse(tb)
    state_s, state_b = tb.workdir / "state-stranger", tb.workdir / "state-b"
    stranger = gateway(tb, "a-gw", "stranger", dht.proxy_urls[0], state_s, "--public", "--no-election")
    assert "PUBLIC mode" in stranger.stderr() and "inject" in stranger.stderr()
    printer(tb, "a-printer", "Stranger Printer")
    stranger.wait_line(r"export new: 'Stranger Printer'", timeout=20, stream="stderr")
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], state_b, "--no-election")
    time.sleep(8)
    assert status(state_b)["imported"] == []
    assert not seen(client, "Stranger Printer")

    # the stranger's values under B's own key (DHT nodes see keys): refused and counted
    before = dict(status(state_b)["rejected"])
    r = tb.node("b-client").run(
        sys.executable, "-c", COPY, dht.proxy_urls[0], str(state_b / "network.secret"), timeout=60
    )
    assert int(r.stdout) >= 1, r.stderr
    gw_b.wait_line(r"rejected a record \(not-sealed\)", timeout=20, stream="stderr")
    time.sleep(2)  # the status file is written every second
    assert status(state_b)["rejected"].get("not-sealed", 0) > before.get("not-sealed", 0)
    assert status(state_b)["imported"] == []
    assert not seen(client, "Stranger Printer")
    assert gw_b.stop(timeout=15) == 0

    # the control: the same B in the open mode imports the stranger's printer
    gw_pub = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], state_b, "--public", "--no-election")
    found = wait_for("Stranger Printer in avahi-browse on B", lambda: seen(client, "Stranger Printer"), 30)
    assert {s["host"] for s in found} == {"printer-stranger-z2z.local"}
    imported = ["Stranger Printer._ipp._tcp (from stranger)"]
    wait_for("B's status.json to list the import", lambda: status(state_b)["imported"] == imported, 5)
    for gw in (stranger, gw_pub):
        assert gw.stop(timeout=15) == 0
        assert "Traceback" not in gw.stderr()
