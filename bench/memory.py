"""Resident memory of a gateway: idle after start, and bridging 100 services.

Run from the repository root (as root):
``.venv/bin/python -m bench.memory [--services 100] [--setup proxy --setup embedded]``

Method.  On a fresh namespace testbed per setup (see `bench.latency` for the
setups), start the campus-A and campus-B gateways (``z2z run``, log level info),
wait `--idle` seconds after both report ``bridging``, and read ``VmRSS`` (resident
now) and ``VmHWM`` (peak resident so far) from ``/proc/PID/status`` of each
gateway process (``ip netns exec`` execs, so the spawned pid is the gateway).
Then `--publishers` printers (``tests/tools/mdns_printer.py --control
--no-probe``, each with its own host name, ``printerK.local``) on ``a-printer``
register `--services` instances between them; campus A's gateway exports them
all, campus B's imports them all and publishes a proxy for each, and a watcher on
``b-client`` checks that every one of them is visible there.  `--settle` seconds
later both gateways are read again.

For scale, the table also has the interpreter alone: a Python process that
imports what ``z2z run`` imports (z2z, python-zeroconf, httpx, APScheduler,
dnslib; plus the ``opendht`` module for the embedded row) and nothing else.
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

from bench.common import (
    REPO,
    SERVICE_TYPE,
    GatewaySetup,
    Testbed,
    choose_setups,
    environment,
    memory_of,
    start_gateways,
    wait_settled,
    wait_until,
)
from bench.latency import gateway_setups

_BASELINE = r"""
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
with open("/proc/self/status") as f:
    print(json.dumps({l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("VmRSS", "VmHWM"))}))
"""
_MODULES = (
    "z2z.app.cli", "z2z.app.gateway", "z2z.app.state", "z2z.app.leadership",
    "z2z.adapters.link.zeroconf", "z2z.adapters.rendezvous", "z2z.adapters.rendezvous.proxy",
)  # fmt: skip


def baseline(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (KiB) of a Python process that only imports the gateway's modules.

    opendht (a large C++ extension) is imported when the gateway process `pid` has
    it mapped, the Avahi link's modules when it has ``_dbus_bindings``.
    """
    maps = Path(f"/proc/{pid}/maps").read_text()
    modules = list(_MODULES)
    if "opendht" in maps:
        modules += ["opendht", "z2z.adapters.rendezvous.embedded"]
    if "_dbus_bindings" in maps:
        modules += ["dbus", "avahi", "z2z.adapters.link.avahi"]
    r = subprocess.run(
        [sys.executable, "-c", _BASELINE, *modules], capture_output=True, text=True, cwd=REPO, check=True
    )
    mem: dict[str, int] = json.loads(r.stdout)
    return mem


def measure(
    name: str,
    setup: GatewaySetup,
    *,
    services: int = 100,
    publishers: int = 10,
    idle: float = 5.0,
    settle: float = 5.0,
    steady: float = 45.0,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Memory of both gateways, idle and with `services` services bridged A → B."""
    started = time.monotonic()
    with Testbed() as tb:
        tb.start_dht()
        gw_a, gw_b = start_gateways(tb, setup)
        via = wait_settled(tb, setup)
        time.sleep(idle)
        idle_mem = {"export (A)": memory_of(gw_a.pid), "import (B)": memory_of(gw_b.pid)}
        watch = tb.spawn_tool("b-client", "mdns_watch", "--type", SERVICE_TYPE)
        watch.wait_event("browsing", timeout=15)
        per = -(-services // publishers)
        names = [f"Printer {i:03d}" for i in range(services)]
        printers = []
        for k in range(publishers):
            mine = names[k * per : (k + 1) * per]
            if not mine:
                break
            pr = tb.spawn_tool(
                "a-printer", "mdns_printer", "--control", "--no-probe", "--type", SERVICE_TYPE,
                "--host", f"printer{k}", "--address", tb.node("a-printer").ipv4, "--txt", "txtvers=1",
                name=f"a-printer-{k}", stdin=True,
            )  # fmt: skip
            printers.append((pr, mine))
        for pr, mine in printers:
            pr.wait_event("ready", timeout=15)
            for n in mine:
                pr.send(f"register {n}")
        t0 = time.monotonic()

        def visible() -> int:
            return len({e["instance"] for e in watch.events() if e.get("event") == "up"})

        ok = wait_until(lambda: visible() >= services, timeout, step=0.2)
        bridged_s = time.monotonic() - t0
        count = visible()
        # The printers register one name after another (each waits for its announcements),
        # so the spread is theirs; the lag after the last registration is the bridge's.
        registered = [e["t"] for pr, _ in printers for e in pr.events() if e.get("event") == "registered"]
        ups = [e["t"] for e in watch.events() if e.get("event") == "up"]
        lag = max(ups) - max(registered) if ups and registered else float("nan")
        time.sleep(settle)
        busy_mem = {"export (A)": memory_of(gw_a.pid), "import (B)": memory_of(gw_b.pid)}
        time.sleep(max(0.0, steady - settle))
        steady_mem = {"export (A)": memory_of(gw_a.pid), "import (B)": memory_of(gw_b.pid)}
        imported = sum(1 for line in gw_b.stderr().splitlines() if "importing '" in line)
        exported = sum(1 for line in gw_a.stderr().splitlines() if "export new: '" in line)
        base = baseline(gw_a.pid)
        for pr, _ in printers:  # their clean exit (goodbyes one by one) is slow and not measured
            pr.kill()
    return {
        "setup": name,
        "label": setup.label,
        "via": via,
        "services": services,
        "publishers": len(printers),
        "exported": exported,
        "imported": imported,
        "visible_on_b": count,
        "complete": ok,
        "bridged_s": round(bridged_s, 2),
        "registering_s": round(max(registered) - min(registered), 2) if registered else None,
        "last_lag_s": round(lag, 4),
        "steady_s": steady,
        "idle": idle_mem,
        "busy": busy_mem,
        "steady": steady_mem,
        "baseline": base,
        "wall_s": round(time.monotonic() - started, 1),
    }


def run(
    names: Sequence[str] | None = None,
    *,
    services: int = 100,
    publishers: int = 10,
    idle: float = 5.0,
    settle: float = 5.0,
    steady: float = 45.0,
) -> dict[str, Any]:
    """Every requested z2z setup (default: all but the reflector), one fresh testbed each."""
    available = gateway_setups()
    chosen = choose_setups("memory", names, available)
    results = []
    for name in chosen:
        print(f"memory: {name} ({services} services)...", file=sys.stderr, flush=True)
        r = measure(
            name, available[name], services=services, publishers=publishers, idle=idle, settle=settle,
            steady=steady,
        )  # fmt: skip
        print(f"memory: {name}: done ({r['wall_s']} s)", file=sys.stderr, flush=True)
        results.append(r)
    return {"env": environment(), "idle_s": idle, "settle_s": settle, "steady_s": steady, "results": results}


def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f}"


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """RSS table in MiB: idle, then with N services bridged (soon after, and later), per role."""
    r0 = results[0] if results else {"services": 100, "steady_s": 45.0}
    n, later = r0["services"], r0["steady_s"]
    lines = [
        f"| setup | bridged via | gateway | idle | {n} services, just bridged "
        f"| {n} services, {later:g} s later | peak (VmHWM) | bridged |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for role in ("export (A)", "import (B)"):
            i, b, s = r["idle"][role], r["busy"][role], r["steady"][role]
            count = r["exported"] if role.startswith("export") else r["imported"]
            lines.append(
                f"| {r['label']} | {r['via']} | {role} | {_mib(i.get('VmRSS'))} | {_mib(b.get('VmRSS'))} "
                f"| {_mib(s.get('VmRSS'))} | {_mib(s.get('VmHWM'))} | {count} of {r['services']} |"
            )
        base = r["baseline"]
        lines.append(
            f"| {r['label']} | | Python + the gateway's imports, nothing running "
            f"| {_mib(base.get('VmRSS'))} | | | | |"
        )
    lines += ["", "Resident memory in MiB (VmRSS of /proc/PID/status; peak = VmHWM at the last reading)."]
    for r in results:
        lines.append("")
        lines.append(
            f"{r['label']}: {r['visible_on_b']} of {r['services']} services visible on B; "
            f"the {r['publishers']} printers on A took {r['registering_s']} s to register them all "
            f"(one name after another, each waiting for its announcements); the last one was visible "
            f"on B {r['last_lag_s'] * 1e3:.0f} ms after its registration"
            + ("" if r["complete"] else " — **incomplete**")
            + "."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--setup", action="append", help="z2z setup to measure (repeatable; default all)")
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--publishers", type=int, default=10, help="printer processes sharing the services")
    p.add_argument("--idle", type=float, default=5.0, help="seconds after start for the idle reading")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after the last service is bridged")
    p.add_argument(
        "--steady",
        type=float,
        default=45.0,
        help="seconds after bridging for the later reading (past a refresh and an anti-entropy)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    out = run(
        a.setup, services=a.services, publishers=a.publishers, idle=a.idle, settle=a.settle, steady=a.steady
    )
    print(markdown(out["results"]))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
