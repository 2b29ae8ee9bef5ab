"""Big campuses: 1,000 services from one site, then 5,000 from 20 sites into one gateway.

Run from the repository root (as root), under the shared lock when CPU matters:
``.venv/bin/python -m bench.scale [--short]``

Method.  One namespace testbed (two campus LANs, a real two-node OpenDHT network
in ``wan``), a private network (one network secret, each site its own Ed25519
key), both gateways with the default quotas and ``--no-election`` (each talks to
its campus's dhtnode REST proxy):

1. *One site, 1,000 services.*  `--publishers` python-zeroconf printers on
   ``a-printer`` (``tests/tools/mdns_printer.py --control --no-probe``) each
   announce their share at once (``burst``); campus A's gateway exports them, campus
   B's imports them and publishes a proxy for each.
2. *20 sites, 5,000 services.*  `bench.feeder` (in ``wan``) plays 19 more sites:
   it seals, signs and puts their values with z2z's own encoder and REST-proxy
   adapter into the dhtnode, exactly as 19 gateways would, and refreshes them on
   the bridge's clock.  Campus B's gateway is the real one under test.

What is visible on campus B's link is counted by ``avahi-browse -pk _ipp._tcp``
against a real avahi-daemon on ``b-client`` (``cache-entries-max`` raised from
4,096: the daemon's cache would otherwise hold fewer records than the link
carries), not by python-zeroconf.  Reported: time from the burst (or the feeder's
start) to the first and to the last service visible, the first → last spread,
VmRSS of both gateways once everything is visible, and campus B's CPU over a
`--steady` window after that (utime + stime from /proc/PID/stat).  Then the
unicast DNS-SD front end's queries/s with 5,000 services in its zone
(`bench.dns_throughput` with ``services=5000``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import REPO, SERVICE_TYPE, Proc, Testbed, burst_printers, memory_of, skip_reason, wait_until

IMPORTER_RSS_TARGET_MIB = 100.0
IMPORTER_CPU_TARGET_PCT = 5.0
DNS_QPS_TARGET = 5000.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (and its waited-for children) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class LinkCount:
    """Instances visible on a link, from a running ``avahi-browse -pk TYPE`` (``+``/``-`` lines)."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.seen: dict[str, float] = {}  # instance -> first time it was counted
        self.gone: set[str] = set()
        self._done = 0

    def poll(self) -> int:
        lines = self.proc.lines()
        now = time.time()
        for line in lines[self._done :]:
            f = line.split(";")
            if len(f) < 5:
                continue
            if f[0] == "+":
                self.seen.setdefault(f[3], now)
                self.gone.discard(f[3])
            elif f[0] == "-":
                self.gone.add(f[3])
        self._done = len(lines)
        return len(self.seen) - len(self.gone)

    def times(self, prefix: str = "") -> list[float]:
        from support.avahi_helpers import unescape

        return sorted(t for name, t in self.seen.items() if unescape(name).startswith(prefix))


def gateway(tb: Testbed, host: str, site: str, url: str, secret: str, extra: Sequence[str] = ()) -> Proc:
    argv = [
        sys.executable, "-m", "z2z", "run", "--site", site, "--interface", "lan0", "--rendezvous", url,
        "--type", SERVICE_TYPE, "--network-secret", secret, "--no-election",
        "--state-dir", str(tb.workdir / f"state-{host}"), "--log-level", "info", *extra,
    ]  # fmt: skip
    proc = tb.spawn(host, argv, name=f"{host}-z2z")
    proc.wait_line(r"bridging ", timeout=30, stream="stderr")
    return proc


def status_of(tb: Testbed, host: str) -> dict[str, Any]:
    try:
        doc = json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def wait_visible(count: LinkCount, target: int, timeout: float) -> tuple[bool, float]:
    """Poll until `target` instances are visible; (reached, seconds waited)."""
    t0 = time.monotonic()
    ok = wait_until(lambda: count.poll() >= target, timeout, step=0.25)
    return ok, time.monotonic() - t0


def run(
    *,
    site_services: int = 1000,
    sites: int = 20,
    total: int = 5000,
    publishers: int = 20,
    steady: float = 60.0,
    timeout: float = 300.0,
    dns: bool = True,
    dns_trials: int = 3,
    dns_duration: float = 2.0,
) -> dict[str, Any]:
    reason = skip_reason()
    if reason:
        raise SystemExit(f"scale benchmark: {reason}")
    from support.avahi_helpers import restart_avahi

    from z2z.app.keys import new_secret

    out: dict[str, Any] = {
        "site_services": site_services,
        "sites": sites,
        "total": total,
        "publishers": publishers,
        "steady_s": steady,
    }
    with Testbed() as tb:
        tb.start_dht()
        secret = str(tb.workdir / "network.secret")
        new_secret(secret, network="z2z")
        tb.start_avahi("b-client")
        restart_avahi(tb, "b-client", crash=False, extra_conf="cache-entries-max=65536")
        urls = tb.dht.proxy_urls  # type: ignore[union-attr]
        gw_a = gateway(tb, "a-gw", "campus-a", urls[0], secret)
        gw_b = gateway(tb, "b-gw", "campus-b", urls[1], secret)
        browse = tb.spawn("b-client", ["avahi-browse", "-pk", SERVICE_TYPE], env=tb.avahis["b-client"].env,
                          name="b-client-browse")  # fmt: skip
        count = LinkCount(browse)
        time.sleep(2)
        out["idle_rss_kib"] = {"A": memory_of(gw_a.pid)["VmRSS"], "B": memory_of(gw_b.pid)["VmRSS"]}

        # 1. one site, `site_services` services announced in a burst on campus A
        printers, t_burst = burst_printers(tb, site_services, publishers)
        ok, _ = wait_visible(count, site_services, timeout)
        ups = count.times("Campus P")
        out["one_site"] = {
            "reached": ok,
            "visible": len(ups),
            "burst_to_first_s": ups[0] - t_burst if ups else None,
            "burst_to_last_s": ups[-1] - t_burst if ups else None,
            "first_to_last_s": ups[-1] - ups[0] if ups else None,
        }
        print(f"scale: one site: {out['one_site']}", file=sys.stderr, flush=True)

        # 2. `sites - 1` more sites fed into the DHT: `total` services in all on campus B
        fed = total - site_services
        t_feed = time.time()
        feeder = tb.spawn(
            "wan",
            [sys.executable, "-m", "bench.feeder", "--proxy", urls[0], "--secret-file", secret,
             "--sites", str(sites - 1), "--total", str(fed)],
            name="wan-feeder", cwd=REPO,
        )  # fmt: skip
        ok2, _ = wait_visible(count, total, timeout)
        fed_ups = count.times("Fed")
        fed_event = next((e for e in feeder.events() if e.get("event") == "fed"), None)
        out["twenty_sites"] = {
            "reached": ok2,
            "visible": count.poll(),
            "fed_values": fed,
            "feeder_put_s": fed_event["t"] - t_feed if fed_event else None,
            "start_to_first_s": fed_ups[0] - t_feed if fed_ups else None,
            "start_to_last_s": fed_ups[-1] - t_feed if fed_ups else None,
            "first_to_last_s": fed_ups[-1] - fed_ups[0] if fed_ups else None,
        }
        print(f"scale: twenty sites: {out['twenty_sites']}", file=sys.stderr, flush=True)
        time.sleep(5)
        out["loaded_rss_kib"] = {"A": memory_of(gw_a.pid), "B": memory_of(gw_b.pid)}
        c0, t0 = cpu_seconds(gw_b.pid), time.monotonic()
        ca0 = cpu_seconds(gw_a.pid)
        time.sleep(steady)
        c1, t1 = cpu_seconds(gw_b.pid), time.monotonic()
        out["steady_cpu_pct"] = {
            "B": 100 * (c1 - c0) / (t1 - t0),
            "A": 100 * (cpu_seconds(gw_a.pid) - ca0) / (t1 - t0),
        }
        out["steady_rss_kib"] = {"A": memory_of(gw_a.pid), "B": memory_of(gw_b.pid)}
        out["still_visible"] = count.poll()
        status_a, status_b = status_of(tb, "a-gw"), status_of(tb, "b-gw")
        out["one_site"]["exported_by_A"] = len(status_a.get("exported", []))
        out["one_site"]["kernel_drops_A"] = status_a.get("link_kernel_drops")
        out["B_status"] = {
            "imported": len(status_b.get("imported", [])),
            "rejected": status_b.get("rejected"),
            "over_quota": status_b.get("over_quota"),
            "answers_too_big": status_b.get("answers_too_big"),
            "rendezvous_ok": status_b.get("rendezvous_ok"),
            "kernel_drops": status_b.get("link_kernel_drops"),
        }
        out["B_warnings"] = [line for line in gw_b.stderr().splitlines() if " WARNING " in line][:20]
        for pr, _ in printers:  # their goodbyes one by one are slow and not measured
            pr.kill()
        feeder.stop()
    if dns:
        import asyncio

        from bench import dns_throughput

        load = dns_throughput.bench(trials=dns_trials, duration=dns_duration, services=total)
        out["dns"] = asyncio.run(load)
    return out


def markdown(r: dict[str, Any]) -> str:
    def mib(kib: Any) -> str:
        value = kib["VmRSS"] if isinstance(kib, dict) else kib
        return f"{value / 1024:.1f}"

    one, many = r["one_site"], r["twenty_sites"]

    def s(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    rss_b = r["steady_rss_kib"]["B"]["VmRSS"] / 1024
    cpu_b = r["steady_cpu_pct"]["B"]
    lines = [
        f"{r['site_services']:,} services from campus A ({r['publishers']} python-zeroconf publishers, "
        f"one burst), then {r['total'] - r['site_services']:,} from {r['sites'] - 1} fed sites: "
        f"{r['total']:,} from {r['sites']} sites on campus B; counted by avahi-browse on `b-client`; "
        f"steady window {r['steady_s']:g} s.",
        "",
        "| case | visible on B | start → first s | start → last s | first → last s |",
        "|---|---:|---:|---:|---:|",
        f"| 1 site, {r['site_services']:,} services (burst on A's link) | {one['visible']:,} / "
        f"{r['site_services']:,} | {s(one['burst_to_first_s'])} | {s(one['burst_to_last_s'])} | "
        f"{s(one['first_to_last_s'])} |",
        f"| {r['sites']} sites, {r['total']:,} services (feeder start) | "
        f"{many['visible']:,} / {r['total']:,} | "
        f"{s(many['start_to_first_s'])} | {s(many['start_to_last_s'])} | {s(many['first_to_last_s'])} |",
        "",
        "| gateway | RSS idle MiB | RSS loaded MiB | RSS after steady MiB | steady CPU % of one core |",
        "|---|---:|---:|---:|---:|",
    ]
    for g, label in (("A", "campus A (exports 1 site)"), ("B", f"campus B (imports {r['total']:,})")):
        lines.append(
            f"| {label} | {mib(r['idle_rss_kib'][g])} | {mib(r['loaded_rss_kib'][g])} | "
            f"{mib(r['steady_rss_kib'][g])} | {r['steady_cpu_pct'][g]:.1f} |"
        )
    lines += [
        "",
        f"Targets for campus B: RSS ≤ {IMPORTER_RSS_TARGET_MIB:g} MiB ({rss_b:.1f}: "
        f"{'met' if rss_b <= IMPORTER_RSS_TARGET_MIB else 'MISSED'}), steady CPU ≤ "
        f"{IMPORTER_CPU_TARGET_PCT:g} % ({cpu_b:.1f}: "
        f"{'met' if cpu_b <= IMPORTER_CPU_TARGET_PCT else 'MISSED'}). "
        f"Still listed on B's link after the steady window: {r['still_visible']:,} of {r['total']:,}. "
        f"A's kernel drops (whole run): {one['kernel_drops_A']}; B's status: {r['B_status']}.",
    ]
    if "dns" in r:
        best = {k: v for k, v in r["dns"]["runs"].items() if k.startswith("z2z")}
        lines += ["", f"Unicast DNS-SD front end with {r['total']:,} services in its zone:", ""]
        from bench import dns_throughput

        lines.append(dns_throughput.markdown({**r["dns"], "runs": best}))
    return "\n".join(lines)


def sizes(short: bool) -> dict[str, Any]:
    """run()'s arguments for the full run, or the short one `make bench` can afford."""
    if short:
        return {"site_services": 200, "total": 600, "publishers": 10, "steady": 15.0, "dns_trials": 1,
                "dns_duration": 1.0}  # fmt: skip
    return {}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true", help="a quick run: 200 + 400 services, 15 s steady")
    p.add_argument("--site-services", type=int, default=1000)
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--total", type=int, default=5000)
    p.add_argument("--publishers", type=int, default=20)
    p.add_argument("--steady", type=float, default=60.0)
    p.add_argument("--no-dns", action="store_true")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    args: dict[str, Any] = {"site_services": a.site_services, "sites": a.sites, "total": a.total,
                            "publishers": a.publishers, "steady": a.steady, "dns": not a.no_dns}  # fmt: skip
    r = run(**{**args, **sizes(a.short)})
    print(markdown(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2, default=str)


if __name__ == "__main__":
    main()
