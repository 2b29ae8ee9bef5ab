"""Soak: two gateways under a hostile link and a lying rendezvous for minutes, memory sampled.

Run from the repository root (as root): ``.venv/bin/python -m bench.soak [--seconds 300]``

Method.  One namespace testbed, a real two-node dhtnode network, campus A's
gateway on the first node's REST proxy, campus B's gateway behind
``tests/tools/lying_proxy.py`` in front of the second (both ``--no-election``, so
every byte B bridges goes through the liar).  For `--seconds`:

- on A's LAN, ``tests/tools/mdns_hostile.py`` announces its hostile names every
  second and flaps one TXT and one goodbye/hello every 100 ms, the whole time;
- a churning printer registers a new instance name every `--churn` seconds and
  withdraws the one registered 20 names earlier (new names forever, ~20 live);
- the liar changes its lie every `--lie` seconds, round robin: honest, HTTP 500,
  junk, endless, slow, truncated, not HTTP, reset.

Every `--sample` seconds the resident memory (VmRSS) of both gateways is read
from /proc.  Reported per gateway: RSS after the warm-up, at the end, the peak,
the growth over the second half and over the last quarter (MiB per hour,
least-squares slopes of VmRSS, and of RssAnon, the anonymous memory that a leak
would make grow, without the shared code and files paged in), RSS at 13
points of the run (so the shape of the curve shows), and what the gateway
counted (records refused, flap holds, rendezvous failures); plus whether it was
still running and how many tracebacks its log holds.

``Z2Z_MEMWATCH=SECONDS`` in the environment is passed on to both gateways
(z2z.app.memwatch): their logs then say what grows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    SERVICE_TYPE,
    Proc,
    Testbed,
    environment,
    gateway_status,
    memory_of,
    skip_reason,
)

LIES = ("honest", "http500", "junk", "endless", "slow", "truncated", "not-http", "reset")
LIAR_PORT = 8090


def _gateway(tb: Testbed, host: str, site: str, url: str) -> Proc:
    proc = tb.spawn(host, [
        sys.executable, "-m", "z2z", "run", "--public", "--site", site, "--interface", "lan0",
        "--no-election", "--rendezvous", url, "--type", SERVICE_TYPE,
        "--state-dir", str(tb.workdir / f"state-{host}"),
        "--anti-entropy", "3", "--log-level", "info",
    ], name=f"{host}-z2z")  # fmt: skip
    proc.wait_line(r"bridging ", timeout=30, stream="stderr")
    return proc


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


def slope_per_hour(samples: Sequence[tuple[float, int]]) -> float:
    """Least-squares growth over (seconds, KiB) samples, in MiB per hour (NaN under 3 samples)."""
    if len(samples) < 3:
        return float("nan")
    xs, ys = [t for t, _ in samples], [kib / 1024 for _, kib in samples]
    return round(statistics.linear_regression(xs, ys).slope * 3600, 2)


def tail(samples: Sequence[tuple[float, int]], since: float) -> list[tuple[float, int]]:
    return [s for s in samples if s[0] >= since]


def checkpoints(samples: Sequence[tuple[float, int]], points: int = 13) -> list[tuple[float, float]]:
    """(minutes, MiB) at `points` evenly spaced samples, the first and the last included."""
    if not samples:
        return []
    n = len(samples)
    picks = sorted({round(i * (n - 1) / max(1, points - 1)) for i in range(points)})
    return [(round(samples[i][0] / 60, 1), _mib(samples[i][1])) for i in picks]


def run(
    seconds: float = 300.0,
    *,
    churn: float = 0.5,
    lie: float = 20.0,
    sample: float = 10.0,
    warmup: float = 20.0,
) -> dict[str, Any]:
    started = time.monotonic()
    with Testbed() as tb:
        dht = tb.start_dht()
        liar = tb.spawn(
            "wan",
            [
                sys.executable,
                "tests/tools/lying_proxy.py",
                "--listen",
                f"{dht.address}:{LIAR_PORT}",
                "--upstream",
                dht.proxy_urls[1],
            ],
            stdin=True,
            name="wan-liar",
        )
        liar.wait_event("listening", timeout=10)
        gateways = {
            "A (honest proxy)": _gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0]),
            "B (behind the liar)": _gateway(tb, "b-gw", "campus-b", f"http://{dht.address}:{LIAR_PORT}"),
        }
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
            "--duration",
            str(seconds + warmup + 60),
        )
        churner = tb.spawn_tool(
            "a-printer",
            "mdns_printer",
            "--control",
            "--no-probe",
            "--type",
            SERVICE_TYPE,
            "--host",
            "churn",
            "--address",
            tb.node("a-printer").ipv4,
            stdin=True,
            name="a-printer-churn",
        )
        hostile.wait_event("ready", timeout=10)
        churner.wait_event("ready", timeout=15)
        t0 = time.monotonic()
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in gateways}
        anon: dict[str, list[tuple[float, int]]] = {name: [] for name in gateways}
        peaks: dict[str, int] = {}
        modes = itertools.cycle(LIES)
        next_lie = next_sample = next_churn = t0
        registered = 0
        end = t0 + warmup + seconds
        while (now := time.monotonic()) < end:
            if now >= next_churn:
                churner.send(f"register Churn {registered:05d}")
                if registered >= 20:
                    churner.send(f"unregister Churn {registered - 20:05d}")
                registered += 1
                next_churn += churn
            if now >= next_lie and now >= t0 + warmup:
                liar.send(f"mode {next(modes)}")
                next_lie = now + lie
            if now >= next_sample:
                for name, proc in gateways.items():
                    if proc.alive:
                        mem = memory_of(proc.pid)
                        if now >= t0 + warmup:
                            samples[name].append((now - t0, mem["VmRSS"]))
                            anon[name].append((now - t0, mem.get("RssAnon", 0)))
                        peaks[name] = mem["VmHWM"]
                next_sample += sample
            time.sleep(0.05)
        liar.send("mode honest")
        results = []
        for (name, proc), host in zip(gateways.items(), ("a-gw", "b-gw"), strict=True):
            rss, ranon = samples[name], anon[name]
            half, quarter = warmup + seconds / 2, warmup + seconds * 3 / 4
            doc = gateway_status(tb, host) or {}
            log = proc.stderr()
            results.append(
                {
                    "gateway": name,
                    "alive": proc.alive,
                    "tracebacks": log.count("Traceback"),
                    "rss_start_mib": _mib(rss[0][1]) if rss else None,
                    "rss_end_mib": _mib(rss[-1][1]) if rss else None,
                    "rss_max_mib": _mib(max(k for _, k in rss)) if rss else None,
                    "peak_mib": _mib(peaks.get(name, 0)),
                    "growth_mib_per_h_2nd_half": slope_per_hour(tail(rss, half)),
                    "growth_mib_per_h_last_quarter": slope_per_hour(tail(rss, quarter)),
                    "anon_growth_mib_per_h_2nd_half": slope_per_hour(tail(ranon, half)),
                    "anon_growth_mib_per_h_last_quarter": slope_per_hour(tail(ranon, quarter)),
                    "anon_start_mib": _mib(ranon[0][1]) if ranon else None,
                    "anon_end_mib": _mib(ranon[-1][1]) if ranon else None,
                    "checkpoints": checkpoints(rss),
                    "samples": len(rss),
                    "rejected": sum((doc.get("rejected") or {}).values()),
                    "flap_holds": log.count("keeps changing"),
                    "rendezvous_failures": sum((doc.get("rendezvous_failures") or {}).values()),
                    "warnings": sum(1 for line in log.splitlines() if " WARNING " in line),
                    "series": [(round(t, 1), kib) for t, kib in rss],  # (seconds, VmRSS KiB), for --json
                    "anon_series": [(round(t, 1), kib) for t, kib in ranon],  # (seconds, RssAnon KiB)
                }
            )
        requests = sum(1 for e in liar.events() if e.get("event") == "request")
        hostile.kill()
        churner.kill()
    return {
        "seconds": seconds,
        "warmup": warmup,
        "churned_names": registered,
        "lie_every": lie,
        "liar_requests": requests,
        "results": results,
        "wall_s": round(time.monotonic() - started, 1),
        "environment": environment(),
    }


def markdown(out: dict[str, Any]) -> str:
    rows = [
        "| gateway | running at the end | tracebacks | RSS after warm-up | at the end | max sampled | "
        "peak (VmHWM) | growth, 2nd half (MiB/h) | growth, last quarter (MiB/h) | "
        "RssAnon: start → end | RssAnon growth, 2nd half / last quarter (MiB/h) | records refused | "
        "flap holds | rendezvous failures | warnings logged |",
        "|---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["results"]:
        rows.append(
            f"| {r['gateway']} | {'yes' if r['alive'] else '**no**'} | {r['tracebacks']} | "
            f"{r['rss_start_mib']} | {r['rss_end_mib']} | {r['rss_max_mib']} | {r['peak_mib']} | "
            f"{r['growth_mib_per_h_2nd_half']} | {r['growth_mib_per_h_last_quarter']} | "
            f"{r['anon_start_mib']} → {r['anon_end_mib']} | "
            f"{r['anon_growth_mib_per_h_2nd_half']} / {r['anon_growth_mib_per_h_last_quarter']} | "
            f"{r['rejected']} | {r['flap_holds']} | {r['rendezvous_failures']} | {r['warnings']} |"
        )
    series = [r["checkpoints"] for r in out["results"]]
    if series and series[0]:
        rows += [
            "",
            "| minute | " + " | ".join(f"{r['gateway']}: VmRSS (MiB)" for r in out["results"]) + " |",
        ]
        rows.append("|---:|" + "---:|" * len(series))
        for i, (minute, _) in enumerate(series[0]):
            cells = [str(s[i][1]) if i < len(s) else "" for s in series]
            rows.append(f"| {minute:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + (
        f"\n\nRSS in MiB, sampled every 10 s for {out['seconds']:g} s after a {out['warmup']:g} s "
        f"warm-up (minutes counted from the start of the warm-up); growth is a least-squares slope. "
        f"Meanwhile {out['churned_names']} instance names came and went on A's link (about 20 "
        f"live at a time), the hostile names were re-announced every second, one TXT and one "
        f"goodbye/hello flapped every 100 ms, and the liar changed its lie every {out['lie_every']:g} s "
        f"({out['liar_requests']} requests reached it)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0, help="how long the soak lasts (default 300)")
    p.add_argument(
        "--churn", type=float, default=0.5, help="seconds between new instance names (default 0.5)"
    )
    p.add_argument("--lie", type=float, default=20.0, help="seconds between lie changes (default 20)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"soak: skipped: {reason}", file=sys.stderr)
        return 2
    out = run(a.seconds, churn=a.churn, lie=a.lie)
    print(markdown(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
