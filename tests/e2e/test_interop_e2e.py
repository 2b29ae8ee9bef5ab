"""Names and subtypes cross intact, judged by stacks that are not python-zeroconf.

avahi-daemon on campus A publishes printers whose names hold dots, a backslash,
an apostrophe, parentheses, ``@``, UTF-8 and 63 bytes, with subtypes
(``_universal``, AirPrint's, which iPhones browse for); real gateways (``z2z run
--no-election``, both link backends in turn) bridge them to campus B.

* What b-gw sends on B's link is captured with a plain socket and parsed with
  dnslib (tests/tools/mdns_capture.py): every PTR names its instance in ONE label,
  for the type and for ``_universal._sub._ipp._tcp``.
* avahi-browse through b-client's own avahi-daemon lists every name, and lists
  the printers with the subtype under ``_universal._sub._ipp._tcp``.
* ``dig`` against b-gw's unicast DNS-SD front end finds them (presentation form
  ``\\.``), under the type and the subtype; ``z2z browse`` shows the subtypes.
* A local service on B (not exported: ``--export-deny``) holds one of the names,
  so that import takes the collision template (``{instance} ({site})``); still
  one label.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import browse, missing_tools, wait_for
from support.interop_corpus import presentation
from support.testbed import Proc, Testbed

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")

_missing = missing_tools() + [t for t in ("dig",) if shutil.which(t) is None]
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils, dnsutils)"
    ),
]

T = "_ipp._tcp"
DOMAIN = "z2z.home.arpa."
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"
SUB = "_universal._sub._ipp._tcp"
TAKEN = "Room 2.14 Printer"  # also published by a local service on B: the import is renamed
_long = "Büro 3.07 — Laser (HP) @ 2.OG"
LONG = _long + "x" * (63 - len(_long.encode()))  # 63 bytes, dots and UTF-8
NAMES = [TAKEN, "Dr. Smith's Printer (2) @ Ünï 漢字 🖨", "a\\b.c", LONG]
# Subtypes each printer announces: _universal and _print are configured (browsed), _x-unlisted is not.
SUBTYPES = {TAKEN: ["_universal", "_print"], NAMES[1]: ["_universal"], NAMES[2]: [], LONG: ["_x-unlisted"]}
EXPECTED = {name: (f"{name} (campus-a)" if name == TAKEN else name) for name in NAMES}


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, mdns: str, *extra: str) -> Proc:
    state = tb.workdir / f"state-{host}"
    env = tb.avahis[host].env if mdns == "avahi" else None
    proc = tb.spawn(
        host,
        [sys.executable, str(GATEWAY), "--mdns", mdns, "run", "--site", site, "--interface", "lan0",
         "--rendezvous", rendezvous, "--type", T, "--state-dir", str(state), "--log-level", "debug",
         "--no-election", "--public", "--subtypes", SUB, "--subtypes", "_print._sub._ipp._tcp", *extra],
        name=f"{host}-z2z",
        env=env,
    )  # fmt: skip
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def dig(tb: Testbed, *args: str) -> list[str]:
    out = tb.node("b-client").run("dig", "@10.77.2.2", "-p", "53", "+short", "+time=2", "+tries=2", *args)
    return [line for line in out.stdout.splitlines() if line]


def wire_names(capture: Proc, owner: str = T) -> list[list[str]]:
    """Targets of the PTR records of `owner` (``.local``) that the capture saw, as lists of labels."""
    labels = [*owner.split("."), "local"]
    return [
        e["target"]
        for e in capture.events()
        if e.get("event") == "rr" and e["rtype"] == "PTR" and e["name"] == labels and e.get("ttl", 0) > 0
    ]


@pytest.mark.parametrize("mdns", ["zeroconf", "avahi"])
def test_names_and_subtypes_cross_intact(testbed: Testbed, mdns: str) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["a-printer", "b-client", *(["a-gw", "b-gw"] if mdns == "avahi" else [])])
    capture = tb.spawn_tool("b-client", "mdns_capture", "--interface", "lan0", "--source", "10.77.2.2")
    capture.wait_event("ready", timeout=10)
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], mdns)
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], mdns, "--dns-listen", "10.77.2.2:53",
                   "--dns-domain", DOMAIN, "--export-deny", TAKEN)  # fmt: skip
    # A local printer on B holds one name first (a device that came later would see our
    # proxy and rename itself, as avahi-publish does).
    tb.spawn("b-client", ["avahi-publish", "-s", TAKEN, T, "9", "local=1"], name="b-local",
             env=tb.avahis["b-client"].env)  # fmt: skip
    wait_for(
        "the local printer on B", lambda: [s for s in browse(tb, "b-client") if s["instance"] == TAKEN], 20
    )
    time.sleep(2)  # b-gw resolves it within about a second
    t0 = time.monotonic()
    for i, name in enumerate(NAMES):
        subs = [f"--subtype={sub}._sub.{T}" for sub in SUBTYPES[name]]
        tb.spawn("a-printer", ["avahi-publish", "-s", *subs, name, T, str(631 + i), f"n={i}"],
                 name=f"a-pub-{i}", env=tb.avahis["a-printer"].env)  # fmt: skip

    def listed(names: set[str], service_type: str = T) -> list[dict]:
        seen = [s for s in browse(tb, "b-client", service_type=service_type)
                if s.get("host", "").startswith("a-printer-campus-a")]  # fmt: skip
        return seen if {s["instance"] for s in seen} >= names else []

    wanted = set(EXPECTED.values())
    seen = wait_for("every name in avahi-browse on B", lambda: listed(wanted), timeout=60, every=1.0)
    print(f"{mdns}: {len(NAMES)} names in avahi-browse on B {time.monotonic() - t0:.1f} s after A published")
    by_name = {s["instance"]: s for s in seen}
    for i, name in enumerate(NAMES):
        got = by_name[EXPECTED[name]]
        # avahi-browse -r resolves the address with AVAHI_PROTO_UNSPEC: on an IPv4 line it may
        # print the host's AAAA (seen once the proxy was announced again); both are a-printer's.
        assert (got["port"], got["txt"]) == (631 + i, [f"n={i}"]), got
        assert got["address"] in (tb.node("a-printer").ipv4, tb.node("a-printer").ipv6), got

    # The subtype: avahi-browse of _universal._sub._ipp._tcp on B lists exactly the printers that have it.
    universal = {EXPECTED[n] for n in NAMES if "_universal" in SUBTYPES[n]}
    found = wait_for(f"{SUB} in avahi-browse on B", lambda: listed(universal, SUB), timeout=30, every=1.0)
    assert {s["instance"] for s in found} == universal

    # On the wire: every PTR b-gw sent names its instance in ONE label, for the type and the subtype.
    targets = wait_for(
        "b-gw's PTRs in the capture",
        lambda: (t := wire_names(capture)) and wanted <= {x[0] for x in t if len(x) == 4} and t,
        timeout=20,
    )
    for target in targets + wire_names(capture, SUB):
        assert len(target) == 4 and target[1:] == ["_ipp", "_tcp", "local"], target
    assert {x[0] for x in wire_names(capture, SUB)} >= universal
    assert not [e for e in capture.events() if e.get("event") == "unreadable"]

    # The unicast front end: dig shows the label with \\. and finds its SRV by that name; subtypes too.
    listed_dns = dig(tb, "PTR", f"{T}.{DOMAIN}")
    for i, name in enumerate(NAMES):
        owner = f"{presentation(EXPECTED[name].encode())}.{T}.{DOMAIN}"
        assert owner in listed_dns, (owner, listed_dns)
        [srv] = dig(tb, "SRV", owner)
        assert srv.split()[2] == str(631 + i), srv
    in_dns = set(dig(tb, "PTR", f"{SUB}.{DOMAIN}"))
    assert {f"{presentation(n.encode())}.{T}.{DOMAIN}" for n in universal} == in_dns

    # RFC 6762 §8.3: every new proxy is announced at least twice, one second apart, so that a
    # receiver busy for a moment does not miss it (python-zeroconf's own three go 225 ms apart;
    # z2z.adapters.link.zeroconf.LATE_ANNOUNCEMENTS follow them).  An announcement is a packet
    # with the type's PTR and the instance's SRV both among its answers: answers to b-client's
    # queries carry the SRV as an additional record (PTR query) or carry no PTR (SRV query).
    type_labels = [*T.split("."), "local"]

    def announced() -> dict[str, list[float]]:
        answers: dict[int, list[dict]] = {}
        for e in capture.events():
            if e.get("event") == "rr" and e["section"] == "an" and e.get("ttl", 0) > 0:
                answers.setdefault(e["packet"], []).append(e)
        found: dict[str, list[float]] = {}
        for rrs in answers.values():
            srv = {tuple(e["name"]) for e in rrs if e["rtype"] == "SRV"}
            for e in rrs:
                if e["rtype"] == "PTR" and e["name"] == type_labels and tuple(e["target"]) in srv:
                    found.setdefault(e["target"][0], []).append(e["t"])
        return found

    def spaced() -> dict[str, list[float]]:
        found = announced()
        return found if all(n in found and max(found[n]) - min(found[n]) >= 1.0 for n in wanted) else {}

    try:  # the last name published (a rename) may have been announced only a moment ago
        wait_for("two announcements 1 s apart for every proxy", spaced, timeout=10, every=0.5)
    except AssertionError:
        found = announced()
        raise AssertionError({n: found.get(n) for n in wanted}) from None

    # What the DHT holds, read with `z2z browse`: the subtypes learned on A.
    out = tb.node("b-client").run(
        sys.executable,
        "-m",
        "z2z",
        "browse",
        "--public",
        "--rendezvous",
        dht.proxy_urls[1],
        "--json",
        T,
        timeout=60,
    )
    stored = {f["instance"]: f["subtypes"] for f in json.loads(out.stdout) if f["site"] == "campus-a"}
    for name in NAMES:
        learned = [s for s in SUBTYPES[name] if s != "_x-unlisted" or mdns == "zeroconf"]
        assert stored[name] == sorted(learned), (name, stored[name], mdns)

    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    for gw in (gw_a, gw_b):
        assert "Traceback" not in gw.stderr(), gw.stderr()[-3000:]
