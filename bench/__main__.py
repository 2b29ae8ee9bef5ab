"""``python -m bench`` (what ``make bench`` runs): every benchmark, tables, docs/performance.md.

    python -m bench                       # all of them (NAMES below); updates the doc
    python -m bench latency memory        # only these (their blocks of the doc are updated)
    python -m bench --no-docs --json out.json

Benchmarks:

* ``latency``  — `bench.latency`: announce/goodbye on campus A → seen on campus B,
  z2z (REST proxy, embedded node, far-away proxy) beside Avahi's reflector (root).
* ``memory``   — `bench.memory`: a gateway's resident memory, idle and bridging 100
  services (root).
* ``dns``      — `bench.dns_throughput`: queries/s of the unicast DNS-SD server beside
  dnslib's stock server (dnsperf when installed, else a built-in load generator).
* ``freshness`` — `bench.dns_freshness`: announcement on campus A → first unicast DNS
  answer that includes it on campus B (dig at the gateway, dig through Unbound,
  avahi-browse -d), and goodbye → gone (root).
* ``simulate`` — `bench.simulate`: the stage machine at 10,000 gateways / 1,000
  islands (simulated time).
* ``formation``, ``failover`` — `bench.formation`, `bench.failover`: the stages with
  real processes (root).
* ``quiet``    — `bench.quiet`: an island's mDNS multicast and heartbeat bytes at
  idle, 1, 3 and 10 gateways on a link, and the old election beside them (root).
* ``idle``     — `bench.idle`: CPU of a gateway with nothing to bridge, from /proc (root).
* ``relay``    — `bench.relay`: MB/s and connect latency through the relay beside the
  direct path (1 and 16 streams; connects also over an emulated 20 ms WAN), private
  network with ``--relay always`` (root).
* ``soak``     — `bench.soak`: minutes of a hostile link and a lying rendezvous,
  memory sampled (root).
* ``upkeep``   — `bench.upkeep`: bytes/s per gateway by class (mDNS, DHT, REST proxy) at
  steady state, window after window, 0 and 100 services, both paths (root, nft).
* ``scale``    — `bench.scale`: 1,000 services from one site, then 5,000 from 20 sites
  into one gateway; time to visible, RSS, steady CPU, DNS-SD q/s at 5,000 (root;
  ``--scale-short`` for a quick run).
* ``repair``   — `bench.repair`: 1,000 services bridged, campus B cut off its rendezvous
  while a new service appears on A, time until B's link lists it, 15 minutes after
  start (root, nft; ``--repair-short`` for a quick run, ``--repair-lock`` to hold the
  testbed lock only around start-up and each trial).
* ``burst``    — `bench.burst`: 3,000 instances from 50 publisher processes in one burst on
  campus A; time until A exported, B imported and B's link lists them all, kernel drops
  (root).

Each benchmark's table replaces the text between ``<!-- bench:NAME:begin -->`` and
``<!-- bench:NAME:end -->`` in docs/performance.md, headed by the date, machine and
versions of that run; the hand-written explanation around the markers stays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO, environment

DOC = REPO / "docs" / "performance.md"
NAMES = (
    "latency",
    "memory",
    "dns",
    "freshness",
    "simulate",
    "formation",
    "failover",
    "quiet",
    "idle",
    "relay",
    "soak",
    "upkeep",
    "scale",
    "repair",
    "burst",
)
SIM_GATEWAYS, SIM_ISLANDS = 10_000, 1_000


def conditions(env: dict[str, Any], command: str) -> str:
    """One paragraph saying when, where and with what a block was measured."""
    versions = ", ".join(
        f"{label} {env[key]}"
        for key, label in (
            ("python", "Python"),
            ("z2z", "z2z"),
            ("zeroconf", "python-zeroconf"),
            ("opendht", "opendht (PyPI)"),
            ("httpx", "httpx"),
            ("dnslib", "dnslib"),
        )
        if env.get(key)
    )
    tools = "; ".join(env[k] for k in ("dhtnode", "avahi", "dnsperf") if env.get(k))
    rev = f" at commit {env['revision']}" if env.get("revision") else ""
    return (
        f"*Measured {env['date']} on {env['cpu']}, {env['cores']} cores, Linux {env['kernel']}, "
        f"{env['os']}; z2z{rev}; {versions}; {tools}. Command: `{command}`.*"
    )


def run_latency(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import latency

    out = latency.run(trials=a.trials)
    return latency.markdown(out["results"]), out


def run_memory(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import memory

    out = memory.run(services=a.services)
    return memory.markdown(out["results"]), out


def run_dns(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import dns_throughput

    out = asyncio.run(dns_throughput.bench(trials=a.dns_trials, duration=a.dns_duration))
    return dns_throughput.markdown(out), out


def run_freshness(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import dns_freshness

    out = dns_freshness.run(trials=a.freshness_trials)
    return dns_freshness.markdown(out), out


def run_simulate(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import simulate

    out = simulate.run(simulate.Model(gateways=SIM_GATEWAYS, islands=SIM_ISLANDS))
    return simulate.markdown(out), out


def run_formation(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import formation

    out = formation.run(islands=20, per_island=3, trials=a.formation_trials)
    return formation.table(out), out


def run_failover(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import failover

    out = failover.run(trials=a.failover_trials)
    return failover.table(out), out


def run_quiet(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import quiet

    out = quiet.run(settle=a.quiet_settle, window=a.quiet_window)
    return quiet.table(out), out


def run_idle(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import idle

    out = idle.run(seconds=a.idle_seconds, baseline=a.idle_baseline)
    return idle.table(out), out


def run_relay(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import relay

    trials, mb, pings = (2, 5.0, 10) if a.relay_short else (a.relay_trials, 20.0, 300)
    out = relay.run(trials, mb, pings)
    wan = relay.run(0, 0.0, pings, relay.WAN_DELAY_MS)
    return relay.markdown(out, wan), {"lan": out, "wan": wan}


def run_soak(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import soak

    out = soak.run(a.soak_seconds)
    return soak.markdown(out), out


def run_upkeep(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import upkeep

    out = upkeep.run(windows=a.upkeep_windows)
    return upkeep.markdown(out["results"]), out


def run_scale(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import scale

    out = scale.run(**scale.sizes(a.scale_short))
    return scale.markdown(out), out


def run_repair(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import repair

    out = repair.run(**{"trials": a.repair_trials, "lock": a.repair_lock, **repair.sizes(a.repair_short)})
    return repair.markdown(out), out


def run_burst(a: argparse.Namespace) -> tuple[str, Any]:
    from bench import burst

    out = burst.run(trials=a.burst_trials, lock=a.repair_lock)
    return burst.markdown(out), out


RUNNERS: dict[
    str, tuple[Callable[[argparse.Namespace], tuple[str, Any]], Callable[[argparse.Namespace], str]]
] = {
    "latency": (run_latency, lambda a: f"python -m bench.latency --trials {a.trials}"),
    "memory": (run_memory, lambda a: f"python -m bench.memory --services {a.services}"),
    "dns": (
        run_dns,
        lambda a: f"python -m bench.dns_throughput --trials {a.dns_trials} --duration {a.dns_duration:g}",
    ),
    "freshness": (run_freshness, lambda a: f"python -m bench.dns_freshness --trials {a.freshness_trials}"),
    "simulate": (
        run_simulate,
        lambda a: f"python -m bench.simulate --gateways {SIM_GATEWAYS} --islands {SIM_ISLANDS}",
    ),
    "formation": (
        run_formation,
        lambda a: f"python -m bench.formation --islands 20 --per-island 3 --trials {a.formation_trials}",
    ),
    "failover": (run_failover, lambda a: f"python -m bench.failover --trials {a.failover_trials}"),
    "quiet": (
        run_quiet,
        lambda a: f"python -m bench.quiet --settle {a.quiet_settle:g} --window {a.quiet_window:g}",
    ),
    "idle": (
        run_idle,
        lambda a: (
            f"python -m bench.idle --seconds {a.idle_seconds:g}"
            + (f" --baseline {a.idle_baseline}" if a.idle_baseline else "")
        ),
    ),
    "relay": (
        run_relay,
        lambda a: "python -m bench.relay" + (" --short" if a.relay_short else f" --trials {a.relay_trials}"),
    ),
    "soak": (run_soak, lambda a: f"python -m bench.soak --seconds {a.soak_seconds:g}"),
    "upkeep": (run_upkeep, lambda a: f"python -m bench.upkeep --windows {a.upkeep_windows}"),
    "scale": (run_scale, lambda a: "python -m bench.scale" + (" --short" if a.scale_short else "")),
    "repair": (
        run_repair,
        lambda a: (
            "python -m bench.repair"
            + (" --short" if a.repair_short else f" --trials {a.repair_trials}")
            + (f" --lock {a.repair_lock}" if a.repair_lock else "")
        ),
    ),
    "burst": (
        run_burst,
        lambda a: (
            f"python -m bench.burst --trials {a.burst_trials}"
            + (f" --lock {a.repair_lock}" if a.repair_lock else "")
        ),
    ),
}


def update_doc(path: Path, blocks: dict[str, str]) -> None:
    """Replace each ``bench:NAME`` marker block of `path`; append blocks that have no markers yet."""
    text = path.read_text() if path.exists() else "# Performance\n"
    for name, body in blocks.items():
        begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
        block = f"{begin}\n{body.strip()}\n{end}"
        rx = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        found = rx.search(text)
        if found:
            text = text[: found.start()] + block + text[found.end() :]
        else:
            text = text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: {' '.join(NAMES)})"
    )
    p.add_argument("--trials", type=int, default=30, help="latency trials per setup (default 30)")
    p.add_argument("--services", type=int, default=100, help="services bridged in the memory benchmark")
    p.add_argument("--formation-trials", type=int, default=3, help="cold starts of 60 gateways (default 3)")
    p.add_argument("--failover-trials", type=int, default=10, help="leader kills and stops each (default 10)")
    p.add_argument("--soak-seconds", type=float, default=300.0, help="length of the soak (default 300)")
    p.add_argument("--quiet-settle", type=float, default=30.0, help="quiet: seconds after the election")
    p.add_argument("--quiet-window", type=float, default=120.0, help="quiet: counted seconds (short: 30)")
    p.add_argument("--idle-seconds", type=float, default=300.0, help="idle: CPU window (short: 60)")
    p.add_argument("--idle-baseline", metavar="DIR", help="idle: also run this checkout's z2z beside")
    p.add_argument("--dns-trials", type=int, default=5)
    p.add_argument("--dns-duration", type=float, default=3.0, help="seconds per dnsperf trial")
    p.add_argument("--freshness-trials", type=int, default=10, help="DNS freshness trials (default 10)")
    p.add_argument("--relay-trials", type=int, default=5, help="relay throughput rounds per path (default 5)")
    p.add_argument("--relay-short", action="store_true", help="the relay benchmark's quick mode")
    p.add_argument("--upkeep-windows", type=int, default=4, help="150-s windows per upkeep setup (default 4)")
    p.add_argument("--scale-short", action="store_true", help="scale: 200 + 400 services, not 1,000 + 4,000")
    p.add_argument("--repair-trials", type=int, default=5, help="repair: cuts of campus B (default 5)")
    p.add_argument("--repair-short", action="store_true", help="repair: 200 services, 2 trials, no idle")
    p.add_argument("--repair-lock", metavar="PATH", help="repair, burst: flock PATH around each trial")
    p.add_argument("--burst-trials", type=int, default=3, help="burst: fresh testbeds, one burst each")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    p.add_argument("--json", type=Path, help="also write every result here")
    a = p.parse_args(argv)
    aliases = {"dns_throughput": "dns", "sim": "simulate", "mem": "memory"}
    names = list(dict.fromkeys(aliases.get(n, n) for n in a.names or NAMES))
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; have {', '.join(NAMES)}")
    os.chdir(REPO)  # dns_throughput's fallback load generator runs ``-m bench.dns_throughput``
    started = time.monotonic()
    blocks: dict[str, str] = {}
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name in names:
        runner, command = RUNNERS[name]
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        env = environment()
        try:
            table, raw = runner(a)
        except (Exception, SystemExit) as exc:
            failed.append(name)
            print(f"== {name} failed: {exc!r}", file=sys.stderr)
            traceback.print_exc()
            continue
        took = time.monotonic() - t0
        print(f"\n## {name} ({took:.0f} s)\n\n{table}\n", flush=True)
        blocks[name] = f"{conditions(env, command(a))}\n\n{table}\n\n*This run took {took:.0f} s.*"
        results[name] = raw
    if blocks and not a.no_docs:
        update_doc(DOC, blocks)
        print(f"updated {DOC.relative_to(REPO)}: {', '.join(blocks)}", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"bench: {time.monotonic() - started:.0f} s in all", file=sys.stderr)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
