"""Idle cost: the CPU of a gateway with nothing to bridge (issue 14 part 4: < 0.5 % of one core).

Three `z2z run` gateways, each alone in its own z2z network (``--network idle-N``,
so they never meet, elect nothing together, form no leaders' DHT), on three hosts
of the namespace testbed, with the testbed's two-node dhtnode rendezvous and
nothing on their links to bridge.  After `settle` seconds, utime + stime of each
process is read from ``/proc/<pid>/stat`` at the start and the end of a window of
`seconds` (≥ 300 s for the doc's figure); the result is % of one core.  The three
gateways run side by side: they are the trials (median, min, max).  Measures
time: run it under the shared lock, and say in the doc that the machine was shared.

    python -m bench.idle [--seconds 300] [--settle 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from bench.common import Testbed, environment

T = "_ipp._tcp"
HOSTS = ("a-gw", "b-gw", "a-printer")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(seconds: float = 300.0, settle: float = 30.0) -> dict[str, Any]:
    with Testbed() as tb:
        dht = tb.start_dht()
        procs = {}
        for i, host in enumerate(HOSTS):
            procs[host] = tb.spawn(
                host,
                [sys.executable, "-m", "z2z", "run", "--public", "--network", f"idle-{i}", "--site",
                 f"site-{i}", "--interface", "lan0", "--rendezvous", dht.proxy_urls[i % 2], "--type", T,
                 "--state-dir", str(tb.workdir / f"state-{host}")],
                name=f"{host}-z2z",
            )  # fmt: skip
        for proc in procs.values():
            proc.wait_line("started for site", timeout=60, stream="stderr")
        time.sleep(settle)
        t0 = time.monotonic()
        before = {h: cpu_seconds(p.pid) for h, p in procs.items()}
        time.sleep(seconds)
        t1 = time.monotonic()
        after = {h: cpu_seconds(p.pid) for h, p in procs.items()}
        states = {}
        for h in HOSTS:
            try:
                doc = json.loads((tb.workdir / f"state-{h}" / "status.json").read_text())
                states[h] = (doc.get("stages") or {}).get("state")
            except (FileNotFoundError, ValueError):
                states[h] = None
    pct = {h: 100.0 * (after[h] - before[h]) / (t1 - t0) for h in HOSTS}
    return {
        "environment": environment(),
        "seconds": round(t1 - t0, 1),
        "settle": settle,
        "percent": pct,
        "states": states,
        "median": statistics.median(pct.values()),
    }


def table(res: dict[str, Any]) -> str:
    p = res["percent"].values()
    states = ", ".join(sorted({str(s) for s in res["states"].values()}))
    return "\n".join(
        [
            "| gateways (trials) | state | window | CPU, median | min | max |",
            "|---:|---|---:|---:|---:|---:|",
            f"| {len(res['percent'])} | {states} | {res['seconds']:g} s | {res['median']:.3f} % of one core "
            f"| {min(p):.3f} % | {max(p):.3f} % |",
        ]
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=30.0)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    out = run(a.seconds, a.settle)
    print(table(out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
