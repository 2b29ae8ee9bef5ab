"""The interop matrix: independent mDNS stacks publish on campus A, independent
browsers judge what z2z re-announces on campus B (docs/interop.md).

One testbed per link backend of the gateways (python-zeroconf, Avahi over D-Bus)
holds every cell at once: each publisher on ``a-printer`` announces its own
printers (names with dots and UTF-8, the ``_universal`` subtype where the stack
can publish subtypes), and each client on ``b-client`` lists what it sees.  A
cell passes when the client reports the instance with its name, port and TXT
exactly as published (and, where the client reads subtypes, the subtype).

Publishers: avahi-daemon (``avahi-publish``), ``@homebridge/ciao``,
``bonjour-service`` and python-zeroconf.  Clients: ``avahi-browse -r`` against
b-client's own avahi-daemon, ``bonjour-service``'s Browser, plain
``multicast-dns`` queries (PTR of the type and of the subtype, then SRV/TXT/A),
Debian's ``mdns-scan`` (names only) and python-zeroconf.  The npm stacks are
pinned in tests/tools/npm/package-lock.json and installed by ``make npm-tools``.

Then, on the same testbed, the corpus (tests/support/interop_corpus.py): every record of
tests/data/device_records.json published by each publisher and judged by each client, plus
``dig`` against b-gw's unicast DNS-SD front end; what a stack cannot publish is an explicit,
checked not-applicable table, and the run prints the matrix of docs/interop.md.

Quirks of the stacks (not of z2z), asserted so that a fix upstream shows up here:
the npm stacks and python-zeroconf split a dotted instance name into several
labels when they *publish* it, so their names here have no dot;
bonjour-service's Browser cuts
``name`` at the first dot (its ``fqdn`` is whole, and is what is compared).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import interop_corpus as corpus
from support.avahi_helpers import browse, missing_tools, wait_for
from support.testbed import Proc, Testbed

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")

NPM = Path(__file__).resolve().parents[1] / "tools" / "npm"
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"
_missing = (
    missing_tools()
    + [t for t in ("node", "mdns-scan", "stdbuf", "timeout", "dig") if shutil.which(t) is None]
    + ([] if (NPM / "node_modules" / "@homebridge" / "ciao").is_dir() else ["make npm-tools"])
)
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-utils, nodejs, mdns-scan, make npm-tools)"
    ),
]

T = "_ipp._tcp"
SUB = "_universal._sub._ipp._tcp"
PRINTER = "10.77.1.10"
PRINTER6 = "fd77:1::10"
CLIENT = "10.77.2.20"
# Publisher -> (instance name, subtypes, port).  Dots only where the stack writes them in one label.
PUBLISHED: dict[str, tuple[str, list[str], int]] = {
    "avahi": ("Avahi Room 2.14 — Ünï (2) @ 3.OG 🖨", ["_universal"], 6301),
    # ciao takes a trailing " (N)" for its own conflict suffix and drops it: none here.
    "ciao": ("Ciao Drucker Ünï 漢字 🖨 @ 2OG", ["_universal"], 6302),
    "bonjour-service": ("Bonjour Drucker Ünï 🖨 (2)", ["_universal"], 6303),
    "python-zeroconf": ("Zeroconf Imprimante Ünï 🖨", [], 6304),
}
CLIENTS = ["avahi-browse", "bonjour-service", "multicast-dns", "mdns-scan", "python-zeroconf"]
# The avahi-published device also offers a web page and the Bonjour Printing "flagship"
# _printer._tcp with port 0 (no LPD): one host, three types; on B one proxy host for all.
ONE_HOST = {T: PUBLISHED["avahi"][2], "_http._tcp": 80, "_printer._tcp": 0}
# SRV priority/weight set by the python-zeroconf printer (RFC 2782): carried to B's link.
SRV_FIELDS = (10, 60)


def txt_of(publisher: str) -> list[str]:
    return [f"pub={publisher}", "note=Room 2.14"]


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, mdns: str, *extra: str) -> Proc:
    env = tb.avahis[host].env if mdns == "avahi" else None
    proc = tb.spawn(
        host,
        [
            sys.executable,
            str(GATEWAY),
            "--mdns",
            mdns,
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
            "--no-election",
            "--public",
            *[a for s in sorted({SUB, *corpus.SUBTYPES}) for a in ("--subtypes", s)],
            *[a for t in sorted({*ONE_HOST, *corpus.TYPES} - {T}) for a in ("--type", t)],
            *extra,
        ],
        name=f"{host}-z2z",
        env=env,
    )
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def node(tb: Testbed, host: str, script: str, *args: str, name: str) -> Proc:
    return tb.spawn(host, ["node", str(NPM / script), *args], name=name, cwd=NPM)


def publish_all(tb: Testbed) -> list[Proc]:
    """Every publisher announces its printer on a-printer (hosts named after the stack)."""
    procs = []
    name, subs, port = PUBLISHED["avahi"]
    for service_type, other_port in ONE_HOST.items():
        if service_type != T:
            procs.append(
                tb.spawn(
                    "a-printer",
                    ["avahi-publish", "-s", name, service_type, str(other_port), "pub=avahi"],
                    name=f"a-pub-avahi{service_type.split('.')[0]}",
                    env=tb.avahis["a-printer"].env,
                )
            )
    procs.append(
        tb.spawn(
            "a-printer",
            [
                "avahi-publish",
                "-s",
                *[f"--subtype={s}._sub.{T}" for s in subs],
                name,
                T,
                str(port),
                *txt_of("avahi"),
            ],  # avahi-publish puts its last argument first on the wire
            name="a-pub-avahi",
            env=tb.avahis["a-printer"].env,
        )
    )
    for stack, tool in (("ciao", "ciao"), ("bonjour-service", "bonjour")):
        name, subs, port = PUBLISHED[stack]
        spec = [
            {
                "name": name,
                "type": T,
                "port": port,
                "host": f"{tool}-printer",
                "txt": dict(s.split("=", 1) for s in txt_of(stack)),
                "subtypes": subs,
            }
        ]
        procs.append(
            node(tb, "a-printer", "publish.mjs", tool, PRINTER, json.dumps(spec), name=f"a-pub-{tool}")
        )
    name, _, port = PUBLISHED["python-zeroconf"]
    procs.append(
        tb.spawn_tool(
            "a-printer",
            "mdns_printer",
            "--name",
            name,
            "--port",
            str(port),
            "--host",
            "zc-printer",
            "--priority",
            str(SRV_FIELDS[0]),
            "--weight",
            str(SRV_FIELDS[1]),
            *[a for t in txt_of("python-zeroconf") for a in ("--txt", t)],
            "--interface",
            "lan0",
            name="a-pub-zeroconf",
        )
    )
    for proc in procs:
        if proc.name.startswith(("a-pub-ciao", "a-pub-bonjour")):
            proc.wait_event("ready", timeout=30)
    procs[-1].wait_event("registered", timeout=30)
    return procs


def instance_of(fqdn: str, service_type: str = T) -> str:
    suffix = f".{service_type}.local"
    name = fqdn.rstrip(".")
    return name[: -len(suffix)] if name.lower().endswith(suffix.lower()) else name


def seen_by_clients(tb: Testbed, watch: Proc) -> dict[str, dict[str, dict[str, Any]]]:
    """client -> instance -> what the client reported (port, txt, subtypes where known)."""
    out: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLIENTS}
    for s in browse(tb, "b-client"):
        if "port" in s:
            # avahi 0.8 lists TXT strings in reverse wire order.
            out["avahi-browse"][s["instance"]] = {"port": s["port"], "txt": s["txt"][::-1], "subtypes": []}
    for s in browse(tb, "b-client", resolve=False, service_type=SUB):
        if s.get("event") == "+" and s["instance"] in out["avahi-browse"]:
            out["avahi-browse"][s["instance"]]["subtypes"] = ["_universal"]

    bonjour = node(tb, "b-client", "browse.mjs", "bonjour", CLIENT, "4", T, name="b-bonjour")
    raw = node(tb, "b-client", "browse.mjs", "mdns", CLIENT, "3", T, SUB, name="b-multicast-dns")
    scan = tb.spawn(
        "b-client", ["timeout", "-s", "INT", "8", "stdbuf", "-oL", "mdns-scan"], name="b-mdns-scan"
    )
    for proc in (bonjour, raw):
        proc.wait_event("done", timeout=30)
    scan.wait(timeout=20)
    for e in bonjour.events():
        if e["event"] == "found":
            out["bonjour-service"][instance_of(e["fqdn"])] = {
                "port": e["port"],
                "txt": e["txt"],
                "subtypes": [],
                "name": e["name"],
            }
    for e in raw.events():
        if e["event"] == "found" and e["browsed"] == T:
            out["multicast-dns"][instance_of(e["fqdn"])] = {
                "port": e["port"],
                "txt": e["txt"],
                "subtypes": [],
                "srv": (e["priority"], e["weight"]),
            }
    for e in raw.events():
        if e["event"] == "found" and e["browsed"] == SUB:
            got = out["multicast-dns"].get(instance_of(e["fqdn"]))  # the instance is of the type
            if got is not None:
                got["subtypes"] = ["_universal"]
    # mdns-scan prints "+ <name>.<type>.local" for every instance it finds, after a spinner
    # ("Browsing ... /") on the same line.
    for full in re.findall(rf"\+ (.*?\.{re.escape(T)}\.local)\r?$", scan.stderr(), flags=re.MULTILINE):
        out["mdns-scan"][instance_of(full)] = {}
    for e in watch.events():
        if e["event"] in ("up", "update") and e["type"] == f"{T}.local.":
            out["python-zeroconf"][e["instance"]] = {"port": e["port"], "txt": e["txt"], "subtypes": []}
    return out


def verdict(client: str, publisher: str, got: dict[str, Any] | None) -> str:
    """``ok`` or what is wrong with what `client` saw of `publisher`'s printer."""
    name, subs, port = PUBLISHED[publisher]
    if got is None:
        return "not seen"
    if client == "mdns-scan":
        return "ok"  # names only
    wrong = []
    if got["port"] != port:
        wrong.append(f"port {got['port']}")
    if got["txt"] != txt_of(publisher):
        wrong.append(f"txt {got['txt']}")
    if client in ("avahi-browse", "multicast-dns") and got["subtypes"] != subs:
        wrong.append(f"subtypes {got['subtypes']}")
    if client == "bonjour-service" and got["name"] != name.split(".")[0]:
        wrong.append(f"name {got['name']!r}")  # its documented quirk changed
    return "ok" if not wrong else "; ".join(wrong)


@pytest.mark.parametrize("mdns", ["zeroconf", "avahi"])
def test_interop_matrix(testbed: Testbed, mdns: str) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["a-printer", "b-client", *(["a-gw", "b-gw"] if mdns == "avahi" else [])])
    types = [a for t in sorted({T, *corpus.TYPES}) for a in ("--type", t)]
    watch = tb.spawn_tool("b-client", "mdns_watch", *types, "--interface", "lan0", name="b-zeroconf")
    watch.wait_event("browsing", timeout=15)
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], mdns)
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], mdns, "--dns-listen",
                   f"{corpus.DNS_SERVER}:53", "--dns-domain", corpus.DNS_DOMAIN)  # fmt: skip
    t0 = time.monotonic()
    publishers = publish_all(tb)
    wanted = {name for name, _, _ in PUBLISHED.values()}

    last: set[str] = set()

    def every_printer() -> bool:
        last.clear()
        last.update(s["instance"] for s in browse(tb, "b-client") if "port" in s)
        return wanted <= last

    try:
        wait_for("every publisher's printer in avahi-browse on B", every_printer, timeout=60, every=1.0)
    except AssertionError:
        print(
            f"avahi-browse on B lists {sorted(last)};"
            f" on A: {[s['instance'] for s in browse(tb, 'a-printer')]}"
        )
        raise
    print(f"{mdns}: {len(wanted)} printers on B {time.monotonic() - t0:.1f} s after A published")
    for attempt in (1, 2):  # one-shot clients listen a few seconds: a loaded machine gets a second round
        seen = seen_by_clients(tb, watch)
        table = {
            (publisher, client): verdict(client, publisher, seen[client].get(PUBLISHED[publisher][0]))
            for publisher in PUBLISHED
            for client in CLIENTS
        }
        if all(v == "ok" for v in table.values()):
            break
        print(f"attempt {attempt}: {[cell for cell, v in table.items() if v != 'ok']}")
    width = max(len(c) for c in CLIENTS)
    print(f"\nbackend {mdns}: publisher on A x client on B")
    print(" " * 16 + " ".join(c.ljust(width) for c in CLIENTS))
    for publisher in PUBLISHED:
        print(publisher.ljust(16) + " ".join(table[publisher, c].ljust(width) for c in CLIENTS))
    bad = {cell: v for cell, v in table.items() if v != "ok"}
    assert not bad, (bad, seen)

    # SRV priority/weight of the python-zeroconf printer, as multicast-dns read them on B.  Avahi's
    # D-Bus API (EntryGroup.AddService) has no priority/weight: its proxies carry 0/0.
    srv = seen["multicast-dns"][PUBLISHED["python-zeroconf"][0]]["srv"]
    assert srv == (SRV_FIELDS if mdns == "zeroconf" else (0, 0)), srv

    # One device, three types (one of them port 0): on B the three proxies share one host
    # name, and that name has the device's address.
    name = PUBLISHED["avahi"][0]
    per_type = {}
    for service_type in ONE_HOST:
        found = wait_for(
            f"{service_type} of the one-host device on B",
            lambda t=service_type: [
                s
                for s in browse(tb, "b-client", service_type=t)
                if s["instance"] == name and "port" in s and s["proto"] == "IPv4"
            ],
            timeout=30,
            every=1.0,
        )
        per_type[service_type] = {(s["host"], s["address"], s["port"]) for s in found}
    hosts = {h for found in per_type.values() for h, _, _ in found}
    assert len(hosts) == 1 and next(iter(hosts)).startswith("a-printer-campus-a"), per_type
    assert {a for found in per_type.values() for _, a, _ in found} == {PRINTER}, per_type
    assert {t: {p for _, _, p in found} for t, found in per_type.items()} == {
        t: {p} for t, p in ONE_HOST.items()
    }

    for proc in publishers:
        proc.stop(timeout=10)

    # The corpus, on the same testbed once the printers are gone (bonjour-service's Browser reads
    # TXT only from the packet that brings an instance's PTR and SRV: more instances of a type
    # on the link can push it into the next packet, see docs/interop.md).
    corpus_publishers = corpus.publish(tb, PRINTER, PRINTER6)
    check_corpus(tb, watch, mdns, corpus_publishers)
    for proc in corpus_publishers.values():
        proc.stop(timeout=10)
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    for gw in (gw_a, gw_b):
        assert "Traceback" not in gw.stderr(), gw.stderr()[-3000:]


CORPUS_TABLES: dict[str, dict[tuple[str, str, str], str]] = {}


def check_corpus(tb: Testbed, watch: Proc, mdns: str, procs: dict[str, Proc]) -> None:
    """Every corpus record, published by each publisher, seen identically by every client on B."""
    t0 = time.monotonic()
    txt_on_a = corpus.check_on_a(tb, procs, PRINTER)
    want = {(r["type"], corpus.published_name(p, r)) for p, r in corpus.published_cells()}
    missing: set[tuple[str, str]] = set()

    def all_on_b() -> bool:
        missing.clear()
        missing.update(want - set(corpus.avahi_all(tb, "b-client")))
        return not missing

    try:
        wait_for("every corpus copy in avahi-browse on B", all_on_b, timeout=90, every=2.0)
    except AssertionError:
        print(f"not on B: {sorted(missing)}")
        raise
    print(f"{mdns}: {len(want)} corpus services on B {time.monotonic() - t0:.1f} s after the check on A")
    for attempt in (1, 2):  # one-shot clients listen a few seconds: a loaded machine gets a second round
        table, seen = corpus.judge(tb, watch, mdns, CLIENT, txt_on_a, PRINTER, PRINTER6)
        bad = corpus.failures(table, incomplete_ok=mdns == "avahi")
        if not bad:
            break
        print(f"corpus attempt {attempt}: {len(bad)} cells not ok")
    CORPUS_TABLES[mdns] = table
    print(corpus.markdown({mdns: table}))
    print(corpus.not_applicable_markdown())
    for cell, v in sorted(table.items()):
        if v != "ok":
            print(f"{mdns}: {cell}: {v}{'' if cell in bad else ' (tolerated, see interop_corpus.py)'}")
    assert not bad, f"{len(bad)} corpus cells not ok (listed above)"
