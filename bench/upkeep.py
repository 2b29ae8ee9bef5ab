"""Upkeep: the bytes a gateway spends per second at steady state, by class, window after window.

Run from the repository root (as root):
``.venv/bin/python -m bench.upkeep [--services 0 100 1000] [--path default proxy]
[--mode private public] [--windows 5] [--window 60]``

Method.  On a fresh namespace testbed per setup (two campuses, a real two-node
OpenDHT network in ``wan``), campus A's gateway exports `services` instances of
``_ipp._tcp`` (registered by `--publishers` python-zeroconf printers on
``a-printer``, ``tests/tools/mdns_printer.py``) and campus B's gateway imports
them.  Each gateway namespace gets an nftables table (``nft``, Debian
``nftables``) whose named counters count the bytes of every IP packet that
enters or leaves ``lan0`` by class:

* ``mdns``  — UDP port 5353 (the link: z2z's own and what it hears);
* ``dht``   — any other UDP (OpenDHT: the embedded node's and the leaders' DHT);
* ``proxy`` — TCP to or from the REST proxies' ports (HTTP);
* ``other`` — the rest.

Packets a gateway multicasts come back to it through the loopback path; those
(source address local, ``fib saddr type local``) are not counted as input.

Once B imports every service (its ``status.json``) and `--settle` more seconds
have passed, the counters are read every `--window` seconds for `--windows`
windows (default 4 × 150 s: exports are re-put every 500 s, so shorter runs
would miss the refresh; the table gives the mean over the windows and the
largest window).  Each window gives bytes/s per gateway, class and direction; the
figure the targets are about is ``dht + proxy`` in + out (the rendezvous
upkeep).  *Flat* (`flat`): between the first and the second half of the windows,
neither the quiet level (median of the lower half of the windows) nor the
peak window grows by more than 10 % (or 20 B/s); the refresh is a burst every
500 s, so the figure to compare with a target is the mean over a run that
spans whole refresh periods (the 30-minute run: 12 × 150 s).

Setups: `--path` ``default`` (election on: the island leaders meet through the
REST proxy and bridge through their own DHT) or ``proxy`` (``--no-election``,
bridging through each campus's REST proxy); `--mode` ``private`` (the default
of `z2z run`: a network secret shared by both gateways) or ``public``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import SERVICE_TYPE, Testbed, choose_setups, gateway_status, wait_until

CLASSES = ("mdns", "dht", "proxy", "other")
PATHS = {
    "default": "defaults (election on, leaders' DHT)",
    "proxy": "--no-election, REST proxy",
}
MODES = ("private", "public")
FLAT_WINDOWS = 10  # fewer windows say nothing about a trend with a 500-s refresh burst
TARGETS = {0: 200.0, 100: 500.0, 1000: 2000.0}  # B/s per gateway, dht + proxy, in + out

_NFT = """
table inet z2zupkeep {{
{counters}
    chain input {{
        type filter hook input priority -300; policy accept;
        iifname != "lan0" return
        fib saddr type local return
        udp sport 5353 counter name mdns_in return
        udp dport 5353 counter name mdns_in return
        tcp sport {{ {proxy_ports} }} counter name proxy_in return
        meta l4proto udp counter name dht_in return
        counter name other_in
    }}
    chain output {{
        type filter hook output priority -300; policy accept;
        oifname != "lan0" return
        udp dport 5353 counter name mdns_out return
        udp sport 5353 counter name mdns_out return
        tcp dport {{ {proxy_ports} }} counter name proxy_out return
        meta l4proto udp counter name dht_out return
        counter name other_out
    }}
}}
"""


def install_counters(tb: Testbed, host: str, proxy_ports: Sequence[int]) -> None:
    """The nftables table of named byte counters in `host`'s namespace (see the module doc)."""
    counters = "\n".join(f"    counter {c}_{d} {{ }}" for c in CLASSES for d in ("in", "out"))
    rules = _NFT.format(counters=counters, proxy_ports=", ".join(str(p) for p in proxy_ports))
    path = tb.workdir / f"nft-{host}.conf"
    path.write_text(rules)
    tb.node(host).run("nft", "-f", str(path))


def read_counters(tb: Testbed, host: str) -> dict[str, int]:
    """Bytes per ``class_direction`` counter so far."""
    r = tb.node(host).run("nft", "-j", "list", "counters", "table", "inet", "z2zupkeep")
    out: dict[str, int] = {}
    for item in json.loads(r.stdout)["nftables"]:
        counter = item.get("counter")
        if counter:
            out[counter["name"]] = int(counter["bytes"])
    return out


def secret_file(tb: Testbed) -> Path:
    from z2z.app import keys

    path = tb.workdir / "network.secret"
    keys.new_secret(path)
    return path


def start(tb: Testbed, path: str, mode: str, log_level: str, services: int = 0) -> dict[str, Any]:
    """Both gateways of one setup; returns their Procs by host."""
    assert tb.dht is not None
    extra: list[str] = ["--mdns", "zeroconf"]
    if services > 256:  # room for them all whatever the quota defaults are (not measured here)
        extra += ["--max-services-per-site", str(2 * services), "--max-bytes-per-site", str(4096 * services)]
    if path == "proxy":
        extra.append("--no-election")
    if mode == "public":
        extra.append("--public")
    else:
        extra += ["--network-secret", str(secret_file(tb))]
    procs = {}
    for host, site, url in (
        ("a-gw", "campus-a", tb.dht.proxy_urls[0]),
        ("b-gw", "campus-b", tb.dht.proxy_urls[1]),
    ):
        argv = [
            sys.executable, "-m", "z2z", "run", "--site", site, "--interface", "lan0",
            "--rendezvous", url, "--type", SERVICE_TYPE, "--state-dir", str(tb.workdir / f"state-{host}"),
            "--log-level", log_level, *extra,
        ]  # fmt: skip
        procs[host] = tb.spawn(host, argv, name=f"{host}-z2z")
    for proc in procs.values():
        proc.wait_line(r"bridging |following", timeout=60, stream="stderr")
    return procs


def publish(tb: Testbed, services: int, publishers: int) -> list[Any]:
    """`services` printers' instances on ``a-printer``, spread over `publishers` processes."""
    if not services:
        return []
    publishers = max(1, min(publishers, services))
    per = -(-services // publishers)
    names = [f"Printer {i:04d}" for i in range(services)]
    procs = []
    for k in range(publishers):
        mine = names[k * per : (k + 1) * per]
        if not mine:
            break
        pr = tb.spawn_tool(
            "a-printer", "mdns_printer", "--control", "--no-probe", "--type", SERVICE_TYPE,
            "--host", f"printer{k}", "--address", tb.node("a-printer").ipv4, "--txt", "txtvers=1",
            "--txt", "rp=printers/queue", "--txt", "ty=Campus Printer Model 1234",
            name=f"a-printer-{k}", stdin=True,
        )  # fmt: skip
        procs.append((pr, mine))
    for pr, mine in procs:
        pr.wait_event("ready", timeout=30)
        for n in mine:
            pr.send(f"register {n}")
    return [pr for pr, _ in procs]


def count(tb: Testbed, host: str, key: str) -> int:
    doc = gateway_status(tb, host)
    return len(doc.get(key) or []) if doc else 0


def slope(ys: Sequence[float]) -> float:
    """Least-squares slope of `ys` against 0, 1, 2, ... (per window)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / den


def flat(ys: Sequence[float]) -> bool:
    """No upward trend between the first and the second half of the windows.

    The refresh is a burst every 500 s that lands in one window or straddles
    two, so single windows swing between tens of B/s and kB/s and neither a
    slope nor the halves' means say whether the cost grows.  Compared instead,
    half against half: the quiet level (the median of the lower half of the
    windows) and the peak (the largest window), each within 10 % (or 20 B/s).
    """
    if len(ys) < 4:
        return True
    half = len(ys) // 2
    first, second = sorted(ys[:half]), sorted(ys[-half:])

    def quiet(xs: list[float]) -> float:
        low = xs[: max(1, len(xs) // 2)]
        return low[len(low) // 2]

    def within(old: float, new: float) -> bool:
        return new <= max(1.1 * old, old + 20.0)

    return within(quiet(first), quiet(second)) and within(first[-1], second[-1])


def measure(
    services: int,
    path: str,
    mode: str,
    *,
    windows: int,
    window: float,
    settle: float,
    publishers: int,
    bridge_timeout: float,
    log_level: str = "info",
) -> dict[str, Any]:
    t_start = time.monotonic()
    with Testbed() as tb:
        dht = tb.start_dht()
        for host in ("a-gw", "b-gw"):
            install_counters(tb, host, dht.proxy_ports)
        start(tb, path, mode, log_level, services)
        via_ok = True
        if path == "default":
            via_ok = wait_until(
                lambda: all(
                    (gateway_status(tb, h) or {}).get("bridging_via") == "dht" for h in ("a-gw", "b-gw")
                ),
                60,
                step=0.5,
            )
        t0 = time.monotonic()
        publish(tb, services, publishers)
        bridged = wait_until(lambda: count(tb, "b-gw", "imported") >= services, bridge_timeout, step=1.0)
        bridged_s = time.monotonic() - t0
        time.sleep(settle)
        series: dict[str, list[dict[str, float]]] = {"a-gw": [], "b-gw": []}
        last = {h: read_counters(tb, h) for h in series}
        t_last = time.monotonic()
        for _ in range(windows):
            time.sleep(window)
            now = {h: read_counters(tb, h) for h in series}
            t_now = time.monotonic()
            for h in series:
                series[h].append({k: (now[h][k] - last[h].get(k, 0)) / (t_now - t_last) for k in now[h]})
            last, t_last = now, t_now
        via = {h: (gateway_status(tb, h) or {}).get("bridging_via") for h in series}
        exported = count(tb, "a-gw", "exported")
        imported = count(tb, "b-gw", "imported")
        skipped = (gateway_status(tb, "b-gw") or {}).get("values_skipped_known")
    return {
        "services": services,
        "path": path,
        "mode": mode,
        "window_s": window,
        "windows": series,
        "bridged": bridged,
        "bridged_s": bridged_s,
        "via_ok": via_ok,
        "via": via,
        "exported": exported,
        "imported": imported,
        "values_skipped_known_b": skipped,
        "took_s": time.monotonic() - t_start,
    }


def verdict(ups: Sequence[float]) -> str:
    """``yes``/``NO`` from `flat` over at least `FLAT_WINDOWS` windows (the long mode), else ``–``."""
    if len(ups) < FLAT_WINDOWS:
        return "–"
    return "yes" if flat(ups) else "NO"


def upkeep(w: dict[str, float]) -> float:
    """The rendezvous upkeep of one window: dht + proxy, in + out (B/s)."""
    return sum(w.get(f"{c}_{d}", 0.0) for c in ("dht", "proxy") for d in ("in", "out"))


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """A summary table (median over windows) and the per-window upkeep series."""
    lines = [
        "| setup | mode | services | gateway | DHT in/out | proxy in/out | **upkeep (DHT+proxy)** mean | "
        "max window | target | flat | mDNS in/out |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    series_lines = []
    for r in results:
        target = TARGETS.get(r["services"])
        for host, label in (("a-gw", "A (exports)"), ("b-gw", "B (imports)")):
            ws = r["windows"][host]
            if not ws:
                continue

            def med(key: str, ws: list[dict[str, float]] = ws) -> float:
                return sum(w.get(key, 0.0) for w in ws) / len(ws)

            ups = [upkeep(w) for w in ws]
            p50 = sum(ups) / len(ups)
            note = "" if r["bridged"] else f" (only {r['imported']} imported)"
            lines.append(
                f"| {PATHS[r['path']]} | {r['mode']} | {r['services']}{note} | {label} | "
                f"{med('dht_in'):,.0f} / {med('dht_out'):,.0f} | "
                f"{med('proxy_in'):,.0f} / {med('proxy_out'):,.0f} | "
                f"**{p50:,.0f}** | {max(ups):,.0f} | {f'≤ {target:,.0f}' if target else ''} | "
                f"{verdict(ups)} ({len(ups)} × {r['window_s']:g} s) | "
                f"{med('mdns_in'):,.0f} / {med('mdns_out'):,.0f} |"
            )
            series_lines.append(
                f"- {PATHS[r['path']]}, {r['mode']}, {r['services']} services, {label}: "
                + ", ".join(f"{u:,.0f}" for u in ups)
                + f" B/s (least-squares slope {slope(ups):+,.0f} B/s per window)"
            )
    return (
        "\n".join(lines)
        + "\n\nUpkeep (DHT + proxy, in + out, B/s) window after window:\n\n"
        + "\n".join(series_lines)
    )


def run(
    services: Sequence[int] = (0, 100),
    paths: Sequence[str] = tuple(PATHS),
    modes: Sequence[str] = ("private",),
    *,
    windows: int = 4,
    window: float = 150.0,
    settle: float = 30.0,
    publishers: int = 20,
    bridge_timeout: float = 300.0,
) -> dict[str, Any]:
    choose_setups("upkeep", paths, PATHS)
    if subprocess.run(["sh", "-c", "command -v nft"], capture_output=True).returncode:
        raise SystemExit("upkeep benchmark: needs nft (Debian nftables; make system installs it)")
    results = []
    for n in services:
        for p in paths:
            for m in modes:
                print(f"upkeep: {n} services, {p}, {m}", file=sys.stderr, flush=True)
                one = measure(
                    n, p, m, windows=windows, window=window, settle=settle,
                    publishers=publishers, bridge_timeout=bridge_timeout,
                )  # fmt: skip
                results.append(one)
    return {"results": results}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, nargs="+", default=[0, 100])
    p.add_argument("--path", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument("--mode", nargs="+", default=["private"], choices=list(MODES))
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--window", type=float, default=150.0, help="seconds per window (default 150)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds after bridging before measuring")
    p.add_argument("--publishers", type=int, default=20)
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--from-json", type=Path, nargs="+", help="only print the table of earlier results")
    a = p.parse_args(argv)
    if a.from_json:
        results = [r for f in a.from_json for r in json.loads(f.read_text())["results"]]
        print(markdown(results))
        return 0
    out = run(
        a.services, a.path, a.mode,
        windows=a.windows, window=a.window, settle=a.settle, publishers=a.publishers,
    )  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    print(markdown(out["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
