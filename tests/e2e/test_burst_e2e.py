"""A busy link: 3,000 instances from 50 publisher processes in one burst on campus A.

Fifty python-zeroconf responders (tests/tools/mdns_printer.py, each its own
process and host name) on ``a-printer`` announce 60 instances each at once.
The kernel drops thousands of datagrams on campus A's gateway even with its
4 MiB buffer; its drop counter and re-queries (z2z.adapters.link.rcvbuf, and
for Avahi z2z.adapters.link.avahi.reconcile) must bring every instance back:
all 3,000 must be in the real DHT within 60 s of the burst, read through the
other campus's dhtnode proxy (not what the gateway believes it put).  Both
link backends; with ``avahi`` the gateways talk to an avahi-daemon on their
own hosts.

What campus B's link lists (``avahi-browse`` through a real avahi-daemon on
``b-client``) and what B imported are printed, not asserted: in three runs B
imported all 3,000 each time, but avahi-browse listed 3,000, 2,889 and 2,922
at 60 s (B publishing 3,000 proxies at once and the client's own daemon
keeping up are a separate problem, docs/performance.md "Big campuses").

Every avahi-daemon here runs with ``cache-entries-max`` raised from its default
4,096 (records per interface): 3,000 services are more records than that, and a
full cache would hide services from the counting client itself.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import missing_tools, restart_avahi, unescape
from support.testbed import Proc, Testbed

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")

_missing = missing_tools()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"),
]

T = "_ipp._tcp"
PUBLISHERS = 50
PER_PUBLISHER = 60
TOTAL = PUBLISHERS * PER_PUBLISHER
WITHIN = 60.0  # seconds from the burst to the last instance visible on B
BIG_CACHE = "cache-entries-max=65536"
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"


def start_avahi(tb: Testbed, host: str) -> None:
    tb.start_avahi(host)
    restart_avahi(tb, host, crash=False, extra_conf=BIG_CACHE)


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, backend: str) -> Proc:
    state = tb.workdir / f"state-{host}"
    proc = tb.spawn(
        host,
        [sys.executable, str(GATEWAY), "--mdns", backend, "run", "--public", "--site", site,
         "--interface", "lan0", "--rendezvous", rendezvous, "--type", T, "--state-dir", str(state),
         "--no-election", "--max-services-per-site", "4096", "--log-level", "info"],
        name=f"{host}-z2z",
        env=tb.avahis[host].env if host in tb.avahis else None,
    )  # fmt: skip
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def visible(browse: Proc) -> set[str]:
    """Instances avahi-browse -pk lists now (``+`` lines, less ``-`` lines)."""
    shown: set[str] = set()
    for line in browse.lines():
        f = line.split(";")
        if len(f) >= 5 and f[0] in "+-":
            (shown.add if f[0] == "+" else shown.discard)(unescape(f[3]))
    return shown


AVAHI_TOO_SLOW = pytest.mark.xfail(
    strict=True,
    reason="Avahi backend: A exported 2,019 and 2,681 of 3,000 in 60 s in two runs (its daemon dropped "
    "~18,000-20,000 datagrams; resolving 3,000 instances through D-Bus record browsers is too slow)",
)


@pytest.mark.parametrize("backend", ["zeroconf", pytest.param("avahi", marks=AVAHI_TOO_SLOW)])
def test_3000_instances_from_50_publishers_in_a_burst_reach_campus_b(testbed: Testbed, backend: str) -> None:
    tb = testbed
    dht = tb.start_dht()
    for host in (["a-gw", "b-gw"] if backend == "avahi" else []) + ["b-client"]:
        start_avahi(tb, host)
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], backend)
    gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], backend)
    browse = tb.spawn("b-client", ["avahi-browse", "-pk", T], name="b-client-browse",
                      env=tb.avahis["b-client"].env)  # fmt: skip
    printers = []
    address = tb.node("a-printer").ipv4
    for k in range(PUBLISHERS):
        argv = ["--control", "--no-probe", "--type", T, "--host", f"burst{k:02d}", "--address", address,
                "--txt", "txtvers=1", "--txt", "rp=ipp/print"]  # fmt: skip
        printers.append(tb.spawn_tool("a-printer", "mdns_printer", *argv, name=f"a-pr-{k:02d}", stdin=True))
    try:
        for pr in printers:
            pr.wait_event("ready", timeout=60)
        t_burst = time.monotonic()
        for k, pr in enumerate(printers):
            pr.send(f"burst {PER_PUBLISHER} Burst {k:02d}-")
        expected = {f"Burst {k:02d}-{i:04d}" for k in range(PUBLISHERS) for i in range(PER_PUBLISHER)}

        def in_dht() -> set[str]:
            """Live instances of campus A in the real DHT, read through B's dhtnode proxy."""
            envs = tb.dht_values(dht.proxy_urls[1], T, timeout=20)
            return {e.service.instance for e in envs if e.site == "campus-a" and not e.gone}

        deadline = t_burst + WITHIN
        stored: set[str] = set()
        shown: set[str] = set()
        took_dht = took_link = math.nan
        while time.monotonic() < deadline:
            if not expected <= stored:
                stored = in_dht()
                if expected <= stored:
                    took_dht = time.monotonic() - t_burst
            shown = visible(browse)
            if expected <= shown:
                took_link = time.monotonic() - t_burst
            if expected <= stored and expected <= shown:
                break
            time.sleep(2)
        announced = sum(1 for pr in printers for e in pr.events() if e.get("event") == "registered")
        drops = [line for line in gw_a.stderr().splitlines() if "the kernel dropped" in line]
        status_a, status_b = (
            json.loads((tb.workdir / f"state-{h}" / "status.json").read_text()) for h in ("a-gw", "b-gw")
        )
        print(f"{backend}: {len(expected & stored)}/{TOTAL} of A's in the DHT ({took_dht:.1f} s); announced "
              f"{announced}; A's kernel drops {status_a['link_kernel_drops']} ({drops[:1]}); B imported "
              f"{len(status_b['imported'])}, avahi-browse on B lists {len(expected & shown)} "
              f"({took_link:.1f} s)")  # fmt: skip
        assert announced == TOTAL, "the publishers did not announce everything"
        missing = sorted(expected - stored)
        assert not missing, f"A exported {TOTAL - len(missing)} of {TOTAL} in {WITHIN:g} s: {missing[:5]}"
        unseen = sorted(expected - shown)
        assert not unseen, (
            f"avahi-browse on B lists {TOTAL - len(unseen)} of {TOTAL} after {WITHIN:g} s: {unseen[:5]}"
        )
    finally:
        for pr in printers:  # at once: 3,000 goodbyes one by one would take minutes
            pr.kill()
