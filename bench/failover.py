"""Leader failover on one island: three real gateways on campus A, one on B.

Each trial finds the island's leader (the gateway whose status.json says it
bridges), then either kills it (SIGKILL: a crash, the cable pulled) or stops it
(SIGTERM: a clean exit with an mDNS goodbye), and measures from that moment to
the log line of the follower that takes over ("bridging ... for site"), whose
timestamp has millisecond resolution.  It also records whether the printer on
campus A ever disappeared from campus B's client during the trial.  The killed
gateway is restarted (same state dir) before the next trial.

    python -m bench.failover [--trials 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import signal
import sys
import time
from typing import Any

from bench.common import Proc, Testbed, environment, summary

T = "_ipp._tcp"
HOSTS = ("a-gw", "a-gw2", "a-gw3")
_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO z2z\.app\.bridging: bridging _ipp\._tcp for site"
)


def _start(tb: Testbed, host: str, url: str) -> Proc:
    return tb.spawn(
        host,
        [
            sys.executable,
            "-m",
            "z2z",
            "run",
            "--public",
            "--site",
            "campus-a" if host != "b-gw" else "campus-b",
            "--interface",
            "lan0",
            "--rendezvous",
            url,
            "--type",
            T,
            "--state-dir",
            str(tb.workdir / f"state-{host}"),
        ],
        name=f"{host}-z2z",
    )


def _bridging(tb: Testbed, host: str) -> bool:
    try:
        return bool(json.loads((tb.workdir / f"state-{host}" / "status.json").read_text()).get("bridging"))
    except (FileNotFoundError, ValueError):
        return False


def _took_over_at(proc: Proc, after: float) -> float | None:
    for line in proc.stderr().splitlines():
        m = _LINE.match(line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 0.002:
                return t
    return None


def run(trials: int = 10) -> dict[str, Any]:
    results: dict[str, Any] = {"environment": environment()}
    with Testbed(hosts={"a-gw2": ("a", 3), "a-gw3": ("a", 4)}) as tb:
        dht = tb.start_dht()
        procs = {h: _start(tb, h, dht.proxy_urls[0]) for h in HOSTS}
        procs["b-gw"] = _start(tb, "b-gw", dht.proxy_urls[1])
        watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
        tb.spawn_tool(
            "a-printer", "mdns_printer", "--name", "Campus Printer", "--type", T, "--address", "10.77.1.10"
        ).wait_event("registered", timeout=20)
        watch.wait_event(lambda e: e.get("event") == "up", timeout=30)
        for kind, sig in (("crash", signal.SIGKILL), ("clean", signal.SIGTERM)):
            took: list[float] = []
            gaps = 0
            for _ in range(trials):
                deadline = time.time() + 20
                while sum(_bridging(tb, h) for h in HOSTS) != 1 and time.time() < deadline:
                    time.sleep(0.1)
                leader = next(h for h in HOSTS if _bridging(tb, h))
                mark = watch.mark()
                t_kill = time.time()
                procs[leader].signal(sig)
                t_new = None
                while t_new is None and time.time() < t_kill + 15:
                    for h in HOSTS:
                        if h != leader:
                            t_new = t_new or _took_over_at(procs[h], t_kill)
                    time.sleep(0.02)
                if t_new is not None:
                    took.append(t_new - t_kill)
                time.sleep(1.0)
                gaps += any(e.get("event") == "down" for e in watch.events()[mark:])
                procs[leader].wait(timeout=10)
                (tb.workdir / f"state-{leader}" / "status.json").unlink(missing_ok=True)
                procs[leader] = _start(tb, leader, dht.proxy_urls[0])
                procs[leader].wait_line("started for site", timeout=30, stream="stderr")
                time.sleep(3.5)  # the restarted gateway settles as a follower
            results[kind] = {
                "takeover_s": summary(took),
                "failed": trials - len(took),
                "printer_gone_on_b": gaps,
            }
    return results


def table(res: dict[str, Any]) -> str:
    rows = [
        "| leader loss | trials | takeover p50 | p95 | min | max | printer gone on B |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("crash", "clean"):
        r = res[kind]
        s = r["takeover_s"]
        rows.append(
            f"| {kind} | {s['n']} (+{r['failed']} failed) | {s['p50']:.3f} s | {s['p95']:.3f} s "
            f"| {s['min']:.3f} s | {s['max']:.3f} s | {r['printer_gone_on_b']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    out = run(a.trials)
    print(table(out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
