"""Bridging latency: announce on campus A → visible on campus B, goodbye on A → removed on B.

Run from the repository root (as root):
``.venv/bin/python -m bench.latency [--trials 30] [--row proxy --row reflector ...]``

Method.  On the namespace testbed (``tests/support/testbed.py``: two campus LANs behind
routers that do not forward multicast, two ``dhtnode`` in ``wan``), one fresh
testbed per row (see `rows`):

* ``default``: two long-running ``z2z run`` gateways as the README starts them,
  ``a-gw`` (site campus-a, rendezvous ``http://10.77.0.1:8080``) and ``b-gw``
  (campus-b, ``:8081``).  With election on (the stage machine), each leads its
  island, they meet through the proxies and move bridging into their leaders' DHT;
  the row waits until both ``status.json`` say ``bridging_via: dht``;
* ``proxy`` / ``embedded``: ``--no-election``: bridging through the rendezvous
  itself, the REST proxies or an OpenDHT node inside each gateway bootstrapping to
  ``opendht://10.77.0.1:4222`` and ``:4223``;
* ``proxy-wan`` / ``default-wan``: the same with each gateway reaching its proxy
  through a TCP relay that delays every byte by `WAN_DELAY_MS` each way;
* ``probe``: ``default`` with a printer that probes each name (10 trials);
* ``reflector``: no z2z at all; avahi-daemon with ``enable-reflector=yes`` on a
  host with one interface on each LAN (``refl``, 10.77.1.5 and 10.77.2.5) — the
  reference, which can only join links that meet in one host;
* ``avahi`` (appears once ``z2z run`` has ``--mdns``): z2z with the Avahi link
  backend, a private avahi-daemon on each gateway host.

On A, the printer (``tests/tools/mdns_printer.py --control``, python-zeroconf) stays
up for the whole run and registers and withdraws instances on command; on B,
``tests/tools/mdns_watch.py`` browses ``_ipp._tcp``.  After the gateways have
browsed for `--warmup` seconds, each trial registers a fresh instance name
(``<setup>-NN``), waits for the watcher's ``up``, holds, unregisters it and waits
for ``down``.  Announce → visible is ``up.t − registered.t``; goodbye → removed is
``down.t − unregistered.t``.  The printer stamps ``registered`` when the first
announcement is handed to the socket (after probing, or at once with
``--no-probe``, which this benchmark uses by default: probing happens *before* the
announcement, so it changes nothing measured, it only makes trials slower); it
stamps ``unregistered`` when the first goodbye is.  The watcher stamps ``up`` when
the instance is resolved (SRV, TXT, address: what a user sees) and ``down`` when
python-zeroconf's browser reports the removal.  All stamps are ``time.time()`` of
one machine.

For z2z setups the gateways' log lines (``export new|gone`` on A, ``importing`` /
``withdrawing import`` on B, millisecond stamps) split each trial into: A's link
(announcement → export decided), the rendezvous (put on A → import decided on B)
and B's link (publish → the watcher sees it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import (
    SERVICE_TYPE,
    GatewaySetup,
    Proc,
    Testbed,
    add_bridge_host,
    bridged_via,
    choose_setups,
    environment,
    log_times,
    memory_of,
    start_gateways,
    start_reflector,
    summary,
    wait_settled,
    z2z_supports,
)

TARGET_P50_S = 1.0
TARGET_P95_S = 2.0
REFLECTOR = "reflector"
WAN_DELAY_MS = 50.0  # one way, gateway <-> its proxy, in the proxy-wan row
TXT = ("txtvers=1", "rp=ipp/print", "note=Floor 2", "Color=T", "pdl=application/pdf,image/urf")


@dataclass(frozen=True)
class Row:
    """One row of the latency table: a bridge (z2z gateways or, with None, the reflector).

    `probe`: the printer probes each new name first (its ``registered`` stamp is
    still the first announcement; the row also reports the probing time).
    `trials`: overrides the run's trial count.
    """

    label: str
    setup: GatewaySetup | None
    probe: bool = False
    trials: int | None = None


def gateway_setups() -> dict[str, GatewaySetup]:
    """The z2z bridges by name.

    ``default`` is ``z2z run`` as documented (election on, when this z2z has it:
    the island leaders meet through the REST proxy, then bridge through their own
    DHT); ``proxy`` and ``embedded`` bridge through the rendezvous itself
    (``--no-election``); ``avahi`` appears once ``z2z run`` has ``--mdns``.
    """
    base: tuple[str, ...] = ()
    if z2z_supports("--mdns"):
        base = ("--mdns", "zeroconf")  # never pick up an avahi-daemon of the machine by accident
    out: dict[str, GatewaySetup] = {}
    if z2z_supports("--no-election"):
        no = (*base, "--no-election")
        out["default"] = GatewaySetup("z2z defaults (election on; REST proxy to meet)", "proxy", base)
        out["proxy"] = GatewaySetup("z2z --no-election, REST proxy", "proxy", no)
        out["embedded"] = GatewaySetup("z2z --no-election, embedded OpenDHT node", "embedded", no)
    else:
        out["proxy"] = GatewaySetup("z2z, REST proxy", "proxy", base)
        out["embedded"] = GatewaySetup("z2z, embedded OpenDHT node", "embedded", base)
    if base:
        first = out.get("default", out["proxy"])
        out["avahi"] = replace(
            first, label=f"{first.label}, Avahi link", args=(*first.args[2:], "--mdns", "avahi"), avahi=True
        )
    return out


def rows() -> dict[str, Row]:
    """Every row of the latency benchmark by name, in table order."""
    gw = gateway_setups()
    out = {name: Row(setup.label, setup) for name, setup in gw.items()}
    far = f"the REST proxy {WAN_DELAY_MS:g} ms away (each way)"
    out["proxy-wan"] = Row(
        f"{gw['proxy'].label}, {far}", replace(gw["proxy"], label=far, wan_delay_ms=WAN_DELAY_MS)
    )
    if "default" in gw:
        out["default-wan"] = Row(
            f"{gw['default'].label}, {far}", replace(gw["default"], label=far, wan_delay_ms=WAN_DELAY_MS)
        )
    first = out.get("default", out["proxy"])
    out["probe"] = Row(f"{first.label}; the printer probes each name first", first.setup, True, 10)
    out[REFLECTOR] = Row("Avahi reflector (reference: one host on both LANs, no z2z)", None)
    return out


def start_printer(tb: Testbed, probe: bool) -> Proc:
    """The long-running printer on campus A, in control mode."""
    args = ["--control", "--type", SERVICE_TYPE, "--port", "631", "--host", "printer",
            "--address", tb.node("a-printer").ipv4]  # fmt: skip
    for t in TXT:
        args += ["--txt", t]
    if not probe:
        args.append("--no-probe")
    proc = tb.spawn_tool("a-printer", "mdns_printer", *args, stdin=True)
    proc.wait_event("ready", timeout=15)
    return proc


def run_trials(
    printer: Proc,
    watch: Proc,
    prefix: str,
    trials: int,
    *,
    hold: float,
    pause: float,
    timeout: float,
) -> list[dict[str, Any]]:
    """Register/unregister `trials` fresh instances; one dict of stamps per trial."""
    from support.testbed import matching

    out: list[dict[str, Any]] = []
    for i in range(trials):
        name = f"{prefix}-{i:02d}"
        trial: dict[str, Any] = {"name": name}
        out.append(trial)
        m, wm = printer.mark(), watch.mark()
        printer.send(f"register {name}")
        reg = printer.wait_event(lambda e, n=name: e.get("name") == n, timeout=15, after=m)
        if reg["event"] != "registered":
            trial["error"] = f"printer: {reg}"
            continue
        trial["registered"] = reg["t"]
        try:
            up = watch.wait_event(matching("up", instance=name), timeout=timeout, after=wm)
        except AssertionError:
            trial["error"] = "never visible on B"
        else:
            trial["up"], trial["up_seen"] = up["t"], up["t_seen"]
        time.sleep(hold)
        m, wm = printer.mark(), watch.mark()
        printer.send(f"unregister {name}")
        bye = printer.wait_event(matching("unregistered", name=name), timeout=15, after=m)
        trial["unregistered"] = bye["t"]
        if "up" in trial:
            try:
                down = watch.wait_event(matching("down", instance=name), timeout=timeout, after=wm)
            except AssertionError:
                trial["error"] = "never removed on B"
            else:
                trial["down"] = down["t"]
        time.sleep(pause)
    return out


def _stage_stamps(trials: list[dict[str, Any]], gw_a: Proc, gw_b: Proc) -> None:
    """Add the gateways' log stamps (export on A, import/withdraw on B) to each trial."""
    patterns = {
        "a_export": (gw_a, r"export new: '{}'"),
        "a_gone": (gw_a, r"export gone: '{}'"),
        "b_import": (gw_b, r"importing '{}'"),
        "b_withdraw": (gw_b, r"withdrawing import '{}'"),
    }
    for key, (proc, pattern) in patterns.items():
        stamps = log_times(proc, pattern.format(r"([^']*)"))
        first: dict[str, float] = {}
        for t, line in stamps:
            name = line.split("'")[1]
            first.setdefault(name, t)
        for trial in trials:
            if trial["name"] in first:
                trial[key] = first[trial["name"]]


def _diffs(trials: list[dict[str, Any]], end: str, start: str) -> list[float]:
    return [t[end] - t[start] for t in trials if end in t and start in t]


def analyse(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Summaries (seconds) of both directions and, where logs allow, of their stages."""
    result: dict[str, Any] = {
        "trials": len(trials),
        "failed": [f"{t['name']}: {t['error']}" for t in trials if "error" in t],
        "announce": summary(_diffs(trials, "up", "registered")),
        "goodbye": summary(_diffs(trials, "down", "unregistered")),
    }
    if any("a_export" in t for t in trials):
        result["stages"] = {
            "announce": {
                "A link (announcement → export)": summary(_diffs(trials, "a_export", "registered")),
                "rendezvous or DHT (export on A → import on B)": summary(
                    _diffs(trials, "b_import", "a_export")
                ),
                "B link (import → visible to the client)": summary(_diffs(trials, "up", "b_import")),
            },
            "goodbye": {
                "A link (goodbye → tombstone)": summary(_diffs(trials, "a_gone", "unregistered")),
                "rendezvous or DHT (tombstone on A → withdraw on B)": summary(
                    _diffs(trials, "b_withdraw", "a_gone")
                ),
                "B link (withdraw → removed at the client)": summary(_diffs(trials, "down", "b_withdraw")),
            },
        }
    return result


def measure(
    name: str,
    row: Row,
    *,
    trials: int = 30,
    warmup: float = 3.0,
    hold: float = 0.3,
    pause: float = 0.3,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """One row: a fresh testbed, the row's bridge, `trials` announce/goodbye cycles."""
    started = time.monotonic()
    setup = row.setup
    with Testbed() as tb:
        gateways: tuple[Proc, Proc] | None = None
        extra: dict[str, Any] = {}
        if setup is None:
            add_bridge_host(tb, "refl", 5)
            reflector = start_reflector(tb, "refl")
        else:
            tb.start_dht()
            t0 = time.monotonic()
            gateways = start_gateways(tb, setup)
            extra["via_before"] = wait_settled(tb, setup)
            extra["settled_s"] = round(time.monotonic() - t0, 2)
            extra["warmup_s"] = warmup
        watch = tb.spawn_tool("b-client", "mdns_watch", "--type", SERVICE_TYPE)
        watch.wait_event("browsing", timeout=15)
        printer = start_printer(tb, row.probe)
        time.sleep(warmup)
        runs = run_trials(printer, watch, name, trials, hold=hold, pause=pause, timeout=timeout)
        if setup is not None and gateways is not None:
            extra["via_after"] = bridged_via(tb, setup)
            _stage_stamps(runs, *gateways)
            for gw in gateways:
                if "Traceback" in gw.stderr():
                    extra.setdefault("tracebacks", []).append(gw.name)
        else:
            extra["reflector_rss_kib"] = memory_of(reflector.pid).get("VmRSS")
        probes = [e["probe_s"] for e in printer.events() if e.get("event") == "registered"]
        result = {"setup": name, "label": row.label, "probe": row.probe, **analyse(runs), **extra}
        result["printer_probe"] = summary(probes)
        result["register_to_visible"] = summary(
            [t["up"] - t["registered"] + p for t, p in zip(runs, probes, strict=False) if "up" in t]
        )
        result["raw"] = runs
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


# --- report ------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return "–" if x != x else f"{x * 1e3:.1f}"  # nan → dash


def _meets(r: dict[str, Any]) -> str:
    ok = all(
        r[d]["n"] and r[d]["p50"] <= TARGET_P50_S and r[d]["p95"] <= TARGET_P95_S
        for d in ("announce", "goodbye")
    )
    return "yes" if ok and not r["failed"] else "**no**"


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """The latency table (milliseconds), then the stage split of the z2z rows."""
    lines = [
        "| setup | bridged via | trials (failed) | announce → visible p50 | p95 | min | max "
        "| goodbye → removed p50 | p95 | min | max | target met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        a, g = r["announce"], r["goodbye"]
        lines.append(
            f"| {r['label']} | {_via(r)} | {r['trials']} ({len(r['failed'])}) "
            f"| {_ms(a['p50'])} | {_ms(a['p95'])} | {_ms(a['min'])} | {_ms(a['max'])} "
            f"| {_ms(g['p50'])} | {_ms(g['p95'])} | {_ms(g['min'])} | {_ms(g['max'])} | {_meets(r)} |"
        )
    lines += [
        "",
        "All times in milliseconds. Target: p50 ≤ 1000 ms and p95 ≤ 2000 ms, both directions.",
    ]
    staged = [r for r in results if "stages" in r]
    if staged:
        lines += [
            "",
            "Where the time goes (from the gateways' millisecond log stamps; p50 / p95 in ms):",
            "",
            "| setup | bridged via | direction | " + " | ".join(_stage_names(staged[0], "announce")) + " |",
            "|---|---|---|---:|---:|---:|",
        ]
        for r in staged:
            for direction in ("announce", "goodbye"):
                cells = [f"{_ms(s['p50'])} / {_ms(s['p95'])}" for s in r["stages"][direction].values()]
                lines.append(f"| {r['label']} | {_via(r)} | {direction} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Columns: link on A (announcement or goodbye → the gateway's export/tombstone), "
            "rendezvous or leaders' DHT (→ the import/withdrawal decided on B), "
            "link on B (→ the client on B sees it).",
        ]
    for r in results:
        if r.get("probe"):
            pr, rv = r["printer_probe"], r["register_to_visible"]
            lines.append(
                f"\n{r['label']}: the printer's probing (python-zeroconf) took p50 {_ms(pr['p50'])} ms "
                f"(min {_ms(pr['min'])}, max {_ms(pr['max'])}); from its register call to visible on B: "
                f"p50 {_ms(rv['p50'])} ms, p95 {_ms(rv['p95'])} ms."
            )
        if r.get("via_before") == "leaders' DHT":
            lines.append(
                f"\n{r['label']}: both gateways bridged via the leaders' DHT {r['settled_s']} s after "
                f"they were started (the trials began {r['warmup_s']:g} s later)."
            )
        if r.get("reflector_rss_kib"):
            lines.append(
                f"\n{r['label']}: avahi-daemon had {r['reflector_rss_kib'] / 1024:.1f} MiB resident (VmRSS) "
                "at the end of its row."
            )
        if r["failed"]:
            lines.append(f"\nFailed trials in {r['label']}: " + "; ".join(r["failed"]))
        if r.get("tracebacks"):
            lines.append(f"\nTracebacks in the logs of {', '.join(r['tracebacks'])} ({r['label']}).")
    return "\n".join(lines)


def _via(r: dict[str, Any]) -> str:
    before, after = r.get("via_before"), r.get("via_after")
    if before is None:
        return "avahi-daemon"
    return before if before == after else f"{before} → {after} (changed during the trials)"


def _stage_names(r: dict[str, Any], direction: str) -> list[str]:
    return [name.split(" (")[0] for name in r["stages"][direction]]


def run(
    names: Sequence[str] | None = None,
    *,
    trials: int = 30,
    warmup: float = 3.0,
    hold: float = 0.3,
    pause: float = 0.3,
) -> dict[str, Any]:
    """Every requested row (default: all), one fresh testbed each; results and conditions."""
    available = rows()
    chosen = choose_setups("latency", names, available)
    results = []
    for name in chosen:
        row = available[name]
        n = min(row.trials, trials) if row.trials else trials
        print(f"latency: {name} ({n} trials)...", file=sys.stderr, flush=True)
        r = measure(name, row, trials=n, warmup=warmup, hold=hold, pause=pause)
        print(
            f"latency: {name}: announce p50 {_ms(r['announce']['p50'])} ms, "
            f"goodbye p50 {_ms(r['goodbye']['p50'])} ms ({r['wall_s']} s)",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    return {
        "env": environment(),
        "trials": trials,
        "warmup_s": warmup,
        "hold_s": hold,
        "pause_s": pause,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    p.add_argument(
        "--row", action="append", help=f"row to run (repeatable; default all: {', '.join(rows())})"
    )
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds the bridge runs before the first trial")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    out = run(a.row, trials=a.trials, warmup=a.warmup)
    print(markdown(out["results"]))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
