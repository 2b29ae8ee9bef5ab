"""A hostile device on campus A's link, a real gateway bridging that link.

`tests/tools/mdns_hostile.py` sends raw mDNS (built with dnslib) that no normal
stack would: names with NUL, invalid UTF-8 and terminal escapes, 63-byte labels,
dots and backslashes, 6 KB and 9 KB TXT records, a TXT that changes every 100 ms
and a service that says goodbye and hello every 100 ms.  The gateway must stay
up, bridge exactly the valid services (names intact), refuse and count the
rest, and rate-limit the flapping ones (flap damping, `z2z.core.flap`), whose final
state must still reach campus B.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from support.testbed import Proc, Testbed, matching

pytestmark = pytest.mark.netns


def missing_avahi() -> str:
    """What the Avahi variant lacks here ('' when it can run)."""
    from support.avahi_helpers import missing_tools

    try:
        import avahi  # noqa: F401
        import dbus.mainloop.glib  # noqa: F401
    except ImportError:
        return "python3-avahi and python3-dbus"
    return ", ".join(missing_tools())


T = "_ipp._tcp"
HALF_LIFE = 2.0  # flap damping: a hold ends at most 3 half-lives after the last change
FLAP_SECONDS = 10.0


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, *extra: str, mdns: str = "zeroconf") -> Proc:
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
            "--mdns",
            mdns,
            "--rendezvous",
            rendezvous,
            "--type",
            T,
            "--state-dir",
            str(tb.workdir / f"state-{host}"),
            "--no-election",
            "--log-level",
            "debug",
            *extra,
        ],
        name=f"{host}-z2z",
        env=tb.avahis[host].env if mdns == "avahi" else None,
    )
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def status(tb: Testbed, host: str) -> dict[str, Any]:
    return json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())


def seen_on_b(watch: Proc, instance: str) -> list[dict[str, Any]]:
    return [e for e in watch.events() if e.get("instance") == instance and e["event"] in ("up", "update")]


@pytest.mark.parametrize("backend", ["zeroconf", "avahi"])
def test_hostile_names_and_flapping_services(testbed: Testbed, backend: str) -> None:
    tb = testbed
    dht = tb.start_dht()
    if backend == "avahi":
        if missing_avahi():
            pytest.skip(f"needs {missing_avahi()}")
        tb.start_avahis(["a-gw"])  # A's gateway reads the hostile link through avahi-daemon
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    watch.wait_event("browsing")
    gw_a = gateway(
        tb, "a-gw", "campus-a", dht.proxy_urls[0], "--flap-half-life", str(HALF_LIFE), mdns=backend
    )
    gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])

    hostile = tb.spawn_tool(
        "a-printer",
        "mdns_hostile",
        "--address",
        tb.node("a-printer").ipv4,
        "--names",
        "--flap-txt",
        "Flapper",
        "--flap-updown",
        "Blinker",
        "--period",
        "0.1",
        "--duration",
        str(FLAP_SECONDS),
    )
    hostile.wait_event("ready")
    t_start = time.time()
    for h in hostile.events()[0]["names"]:  # one "sent" line per name, once the first round is out
        hostile.wait_event(matching("sent", instance=h), timeout=5)
    sent = [e for e in hostile.events() if e["event"] == "sent"]
    valid = {bytes.fromhex(e["instance"]).decode() for e in sent if e["valid"]}
    invalid = {bytes.fromhex(e["instance"]) for e in sent if not e["valid"]}
    assert len(valid) == 6 and len(invalid) == 5, sent
    refused_by_z2z = len(invalid)
    if backend == "avahi":
        # avahi-daemon itself drops names with NUL or bytes that are not UTF-8, and a
        # service whose SRV target is no valid host name: they never reach z2z.
        valid.discard("Odd Host")
        refused_by_z2z -= 2

    # every valid name crosses intact, whatever dots, backslashes or UTF-8 it holds
    for name in sorted(valid):
        up = watch.wait_event(matching("up", instance=name), timeout=20)
        assert up["port"] == 631 and up["addresses"] == [tb.node("a-printer").ipv4], up
    if "Odd Host" in valid:
        odd = next(e for e in watch.events() if e.get("instance") == "Odd Host")
        assert odd["host"].endswith("-campus-a-z2z.local.") and odd["host"].isascii(), odd

    # the flapper: a few versions cross, then it is held until it settles on "state=final"
    done = hostile.wait_event("flap-done", timeout=FLAP_SECONDS + 10)
    held = status(tb, "a-gw")["flapping"]
    assert f"Flapper.{T}" in held, held
    during = [e for e in seen_on_b(watch, "Flapper") if e["t"] <= done["t"]]
    print(
        f"Flapper: {done['changes']} TXT changes sent on A in {FLAP_SECONDS:g} s; "
        f"B saw {len(during)} versions meanwhile"
    )
    assert done["changes"] >= 50  # it really flapped every ~100 ms
    assert 1 <= len(during) <= 6, during
    final = watch.wait_event(
        lambda e: e.get("instance") == "Flapper" and e.get("txt") == ["state=final"],
        timeout=3 * HALF_LIFE + 8,
    )
    print(f"Flapper: final state on B {final['t'] - done['t']:.1f} s after the flapping stopped")
    assert f"Flapper.{T}" not in status(tb, "a-gw")["flapping"]
    # the up/down blinker: B saw it come and stay; the goodbyes never made it blink on B
    blinks = [e for e in watch.events() if e.get("instance") == "Blinker"]
    assert blinks and blinks[-1]["event"] in ("up", "update"), blinks
    assert sum(e["event"] == "down" for e in blinks) <= 2, blinks

    # nothing invalid crossed; each was refused and counted (logged once); the gateway never stopped
    time.sleep(2)
    names_on_b = {e["instance"] for e in watch.events() if "instance" in e}
    assert names_on_b == valid | {"Flapper", "Blinker"}, names_on_b ^ (valid | {"Flapper", "Blinker"})
    doc = status(tb, "a-gw")
    assert doc["rejected"].get("bad-local-service", 0) >= refused_by_z2z, doc["rejected"]
    exported = {s.removesuffix("." + T) for s in doc["exported"]}
    assert exported == valid | {"Flapper", "Blinker"}, exported
    assert gw_a.alive
    log = gw_a.stderr()
    assert "Traceback" not in log
    assert log.count("keeps changing") >= 1
    assert log.count("WARNING z2z.app.bridging: rejected a record (bad-local-service)") == 1
    print(
        f"hostile link ({backend}): {len(valid)} valid names bridged, refused {doc['rejected']}, "
        f"{time.time() - t_start:.0f} s"
    )
