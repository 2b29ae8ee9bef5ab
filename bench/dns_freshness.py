"""Freshness for unicast DNS-SD clients: printer announced on campus A → first answer on campus B
that includes it (and goodbye → first answer without it), as real clients see it.

Run from the repository root (as root):
``.venv/bin/python -m bench.dns_freshness [--trials 10] [--interval 0.25]``

Method.  On the namespace testbed, the two gateways run as the README starts them
(election on: they end up bridging through their leaders' DHT, the row waits for
that) and both serve unicast DNS-SD (``--dns-listen 0.0.0.0:53 --dns-domain
campus.example.``, default TTL cap, 9 s).  A real Unbound on campus B's router
forwards ``campus.example.`` to B's gateway (stub zone, as docs/dns-sd.md says); a
real avahi-daemon on ``b-client`` has wide-area browsing on and Unbound as its
name server.  Each trial registers a fresh instance on A's printer
(``tests/tools/mdns_printer.py --control --no-probe``), and three pollers on
``b-client``, each every `--interval` seconds, stamp the first answer that lists
it:

* ``dig @gateway``: ``dig PTR _ipp._tcp.campus.example.`` straight at B's gateway
  (no cache between: what the bridge itself costs);
* ``dig @Unbound``: the same question to the campus resolver (its cache holds the
  PTR RRset up to the TTL cap, and a negative answer up to the SOA minimum);
* ``avahi-browse -d``: ``avahi-browse -tp -d campus.example _ipp._tcp``, Avahi's
  own wide-area client through Unbound (plus avahi-daemon's own cache).

Then the instance is unregistered and the same pollers stamp the first answer
without it.  Announce → seen is ``seen − registered``; goodbye → gone is
``gone − unregistered`` (the printer's stamps: its first announcement or goodbye
on the wire; all stamps are ``time.time()`` of one machine).  The pollers keep
asking between trials, as a real client that browses now and then would: the
resolver's cache is warm, which is the case the TTL cap is about.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    SERVICE_TYPE,
    GatewaySetup,
    Testbed,
    environment,
    start_gateways,
    summary,
    wait_settled,
)
from z2z.adapters.dns.zone import DEFAULT_TTL_CAP

DOMAIN = "campus.example."
TTL_CAP = DEFAULT_TTL_CAP
TARGET_P95_S = 11.0
CLIENTS = ("dig @gateway", "dig @Unbound", "avahi-browse -d")

_UNBOUND = """server:
    interface: {address}
    port: 53
    access-control: 10.77.0.0/16 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    domain-insecure: "{domain}"
remote-control:
    control-enable: no
stub-zone:
    name: "{domain}"
    stub-addr: {gateway}
"""


def start_unbound(tb: Testbed, gateway: str) -> str:
    """A real Unbound on campus B's router, stub zone for the domain → `gateway`; its address."""
    node = tb.node("rb")
    d = tb.workdir / "unbound-rb"
    d.mkdir()
    (d / "unbound.conf").write_text(_UNBOUND.format(address=node.ipv4, d=d, domain=DOMAIN, gateway=gateway))
    proc = tb.spawn("rb", ["unbound", "-d", "-c", str(d / "unbound.conf")], name="rb-unbound")
    proc.wait_line(r"start of service", timeout=15, stream="stderr")
    return node.ipv4


class Poller(threading.Thread):
    """Asks one client every `interval` s; remembers when each instance name was first/last seen."""

    def __init__(self, name: str, ask: Callable[[], set[str]], interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.ask, self.interval = ask, interval
        self.first_seen: dict[str, float] = {}
        self.first_gone: dict[str, float] = {}
        self.queries = 0
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        seen_before: set[str] = set()
        while not self._halt.is_set():
            try:
                names = self.ask()
            except Exception:  # one failed poll is a data point, not the end of the run
                self.errors += 1
                names = seen_before
            t = time.time()
            self.queries += 1
            for n in names - seen_before:
                self.first_seen.setdefault(n, t)
            for n in seen_before - names:
                self.first_gone.setdefault(n, t)
            seen_before = names
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()


def _instances_from_dig(lines: str) -> set[str]:
    # dig +short writes "fresh-03._ipp._tcp.campus.example." (a space would be \032)
    return {ln.split(".", 1)[0] for ln in lines.split() if ln.endswith(f"{SERVICE_TYPE}.{DOMAIN}")}


def run(trials: int = 10, interval: float = 0.25, timeout: float = 30.0) -> dict[str, Any]:
    from support.testbed import matching

    from bench.latency import start_printer

    t_start = time.monotonic()
    results: dict[str, Any] = {"trials": trials, "interval": interval, "ttl_cap": TTL_CAP}
    with Testbed() as tb:
        tb.start_dht()
        setup = GatewaySetup(
            "z2z defaults, unicast DNS-SD on both gateways",
            "proxy",
            ("--mdns", "zeroconf", "--dns-listen", "0.0.0.0:53", "--dns-domain", DOMAIN),
        )
        start_gateways(tb, setup)
        results["bridged_via"] = wait_settled(tb, setup)
        gateway = tb.node("b-gw").ipv4
        resolver = start_unbound(tb, gateway)
        netns_etc = Path("/etc/netns") / tb.node("b-client").netns
        netns_etc.mkdir(parents=True, exist_ok=True)
        try:
            (netns_etc / "resolv.conf").write_text(f"nameserver {resolver}\n")
            avahi = tb.start_avahi("b-client", wide_area=True)
            client = tb.node("b-client")

            def dig(server: str) -> Callable[[], set[str]]:
                def ask() -> set[str]:
                    out = client.run(
                        "dig", f"@{server}", "+short", "+time=1", "+tries=1", "PTR",
                        f"{SERVICE_TYPE}.{DOMAIN}", check=False, timeout=5,
                    )  # fmt: skip
                    return _instances_from_dig(out.stdout)

                return ask

            def avahi_browse() -> set[str]:
                out = client.run(
                    "avahi-browse", "-tp", "-d", DOMAIN.rstrip("."), SERVICE_TYPE,
                    env=avahi.env, check=False, timeout=15,
                )  # fmt: skip
                return {ln.split(";")[3] for ln in out.stdout.splitlines() if ln.startswith("+")}

            pollers = [
                Poller(CLIENTS[0], dig(gateway), interval),
                Poller(CLIENTS[1], dig(resolver), interval),
                Poller(CLIENTS[2], avahi_browse, interval),
            ]
            printer = start_printer(tb, probe=False)
            for p in pollers:
                p.start()
            time.sleep(2)  # warm caches: clients that browse now and then
            stamps: list[dict[str, float]] = []
            for i in range(trials):
                name = f"fresh-{i:02d}"
                m = printer.mark()
                printer.send(f"register {name}")
                reg = printer.wait_event(lambda e, n=name: e.get("name") == n, timeout=15, after=m)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not all(name in p.first_seen for p in pollers):
                    time.sleep(0.05)
                m = printer.mark()
                printer.send(f"unregister {name}")
                bye = printer.wait_event(matching("unregistered", name=name), timeout=15, after=m)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not all(name in p.first_gone for p in pollers):
                    time.sleep(0.05)
                stamps.append({"registered": reg["t"], "unregistered": bye["t"]})
            elapsed = time.monotonic() - t_start
            for p in pollers:
                p.stop()
            for p in pollers:
                p.join(timeout=20)
            rows = []
            for p in pollers:
                up = [
                    p.first_seen[f"fresh-{i:02d}"] - s["registered"]
                    for i, s in enumerate(stamps)
                    if f"fresh-{i:02d}" in p.first_seen
                ]
                down = [
                    p.first_gone[f"fresh-{i:02d}"] - s["unregistered"]
                    for i, s in enumerate(stamps)
                    if f"fresh-{i:02d}" in p.first_gone
                ]
                rows.append(
                    {
                        "client": p.name,
                        "up": summary(up),
                        "down": summary(down),
                        "missed_up": trials - len(up),
                        "missed_down": trials - len(down),
                        "polls_per_s": p.queries / max(elapsed, 1e-9),
                        "errors": p.errors,
                    }
                )
            results["rows"] = rows
        finally:
            shutil.rmtree(netns_etc, ignore_errors=True)
    results["seconds"] = time.monotonic() - t_start
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['trials']} trials; each client polls every {results['interval']:g} s; "
        f"TTL cap {results['ttl_cap']} s; bridging via {results.get('bridged_via', '?')}. "
        f"**Target: p95 ≤ {TARGET_P95_S:g} s** (announce → seen).",
        "",
        "| client | announce → seen p50 s | p95 s | max s | goodbye → gone p50 s | p95 s | max s | missed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        up, down = r["up"], r["down"]
        lines.append(
            f"| {r['client']} | {up['p50']:.2f} | {up['p95']:.2f} | {up['max']:.2f} | "
            f"{down['p50']:.2f} | {down['p95']:.2f} | {down['max']:.2f} | "
            f"{r['missed_up']} / {r['missed_down']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    out = run(trials=a.trials, interval=a.interval)
    print(markdown(out))
    print(f"\n*This run took {out['seconds']:.0f} s.*")
    if a.json:
        Path(a.json).write_text(json.dumps({"environment": environment(), **out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
