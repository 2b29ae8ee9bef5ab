"""Idle cost: the CPU of a gateway with nothing to bridge (issue 14 part 4: < 0.5 % of one core).

Three `z2z run` gateways, each alone on its own campus LAN of the namespace
testbed and in its own z2z network (``--network idle-N``, so they never meet,
form no leaders' DHT), with the testbed's two-node dhtnode rendezvous and
nothing on their links to bridge.  With ``--baseline DIR`` three more run side
by side in the same window from another checkout (``PYTHONPATH=DIR``, e.g. an
export of the main branch), for a before/after under the same load.  After
`settle` seconds, utime + stime of each process is read from ``/proc/<pid>/stat``
at the start and the end of a window of `seconds` (≥ 300 s for the doc's
figure); the result is % of one core.  The gateways of one kind run side by
side: they are the trials (median, min, max).  Measures time: run it under the
shared lock, and say in the doc that the machine was shared.

    python -m bench.idle [--seconds 300] [--settle 30] [--baseline DIR]
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
CAMPUSES = "cdefgh"  # one LAN each: nobody hears another gateway's multicast
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(seconds: float = 300.0, settle: float = 30.0, baseline: str | None = None) -> dict[str, Any]:
    kinds = [("this", None)] + ([("baseline", baseline)] if baseline else [])
    hosts = {f"{c}-gw": (c, 2) for c in CAMPUSES[: 3 * len(kinds)]}
    which = {h: kinds[i // 3][0] for i, h in enumerate(hosts)}
    with Testbed(hosts=hosts) as tb:
        dht = tb.start_dht()
        procs = {}
        for i, host in enumerate(hosts):
            code = kinds[i // 3][1]
            procs[host] = tb.spawn(
                host,
                [sys.executable, "-m", "z2z", "run", "--public", "--network", f"idle-{i}", "--site",
                 f"site-{i}", "--interface", "lan0", "--rendezvous", dht.proxy_urls[i % 2], "--type", T,
                 "--state-dir", str(tb.workdir / f"state-{host}")],
                name=f"{host}-z2z",
                env={"PYTHONPATH": code} if code else None,
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
        for h in hosts:
            try:
                doc = json.loads((tb.workdir / f"state-{h}" / "status.json").read_text())
                states[h] = (doc.get("stages") or {}).get("state")
            except (FileNotFoundError, ValueError):
                states[h] = None
    rows = []
    for kind, code in kinds:
        mine = [h for h in hosts if which[h] == kind]
        pct = [100.0 * (after[h] - before[h]) / (t1 - t0) for h in mine]
        rows.append(
            {
                "code": kind if code is None else f"{kind} ({code})",
                "percent": pct,
                "median": statistics.median(pct),
                "states": sorted({str(states[h]) for h in mine}),
            }
        )
    return {"environment": environment(), "seconds": round(t1 - t0, 1), "settle": settle, "rows": rows}


def table(res: dict[str, Any]) -> str:
    lines = [
        "| code | gateways (trials) | state | window | CPU, median | min | max |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        p = r["percent"]
        lines.append(
            f"| {r['code']} | {len(p)} | {', '.join(r['states'])} | {res['seconds']:g} s "
            f"| {r['median']:.3f} % of one core | {min(p):.3f} % | {max(p):.3f} % |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=30.0)
    p.add_argument("--baseline", metavar="DIR", help="also run this checkout's z2z (PYTHONPATH) beside")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    out = run(a.seconds, a.settle, a.baseline)
    print(table(out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
