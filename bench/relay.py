"""Throughput and connect latency through the relay, beside the direct path (``python -m bench.relay``).

On the routed two-campus testbed (where the direct path exists), gateways of a
private network run with ``--relay always``: B's gateway publishes A's service
as a proxy on its own address, carried over TLS 1.3 to A's gateway.  From
b-client, `bench.relay_load` sends to the service directly (a-printer) and
through the relay (b-gw's proxy port): MB/s with 1 and 16 parallel streams
(p50 over trials, and each gateway's CPU seconds per GB) and the time from
connect() to the first answer (p50/p95), back to back and `GAP_MS` apart,
whose difference is what the relay adds.  A second testbed repeats the
connects over an emulated WAN (`WAN_DELAY_MS` each way, a delaying TCP relay in
``wan`` in front of both paths).  ``--short`` is the quick mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.common import REPO, Testbed, pct, skip_reason, start_delay_relay
from bench.idle import cpu_seconds
from z2z.app import keys

LOAD = REPO / "bench" / "relay_load.py"  # run as a script inside the namespaces
SERVICE = "_bench._tcp"
PORT = 9000
RELAY_PORT = 4224  # relay-listen's default
WAN_DELAY_MS = 10.0  # each way: the emulated WAN's round trip is 20 ms


GAP_MS = 20.0  # the spaced connects: a client that does something between connects


def _load(
    tb: Testbed, host: str, port: int, streams: int, mb: float, trials: int, pings: int, gap: float = 0.0
) -> dict[str, Any]:
    r = tb.node("b-client").run(
        sys.executable, str(LOAD), "load", host, str(port),
        "--streams", str(streams), "--mb", str(mb), "--trials", str(trials), "--pings", str(pings),
        "--gap", str(gap), timeout=600,
    )  # fmt: skip
    return json.loads(r.stdout.splitlines()[-1])


def run(trials: int = 5, mb: float = 20.0, pings: int = 50, wan_delay_ms: float = 0.0) -> dict[str, Any]:
    """One testbed.  With `wan_delay_ms`, connects only, both paths through a delaying relay in ``wan``."""
    reason = skip_reason()
    if reason:
        raise SystemExit(f"bench.relay: {reason}")
    with Testbed() as tb:
        dht = tb.start_dht()
        secret = tb.workdir / "network.secret"
        keys.new_secret(secret)
        server = tb.spawn("a-printer", [sys.executable, str(LOAD), "serve", "--port", str(PORT)])
        server.wait_event("listening", timeout=10)
        tb.spawn(
            "a-printer",
            [
                sys.executable, str(_tool("mdns_printer")), "--name", "Bench Service", "--type", SERVICE,
                "--port", str(PORT), "--host", "bench", "--address", tb.node("a-printer").ipv4,
            ],
            name="a-announce",
        ).wait_event("registered", timeout=15)  # fmt: skip
        direct_host, direct_port = tb.node("a-printer").ipv4, PORT
        advertise: list[str] = []
        if wan_delay_ms:
            wan4 = tb.node("wan").ipv4
            # The relay endpoint and the direct path both cross the same delaying relay in wan.
            start_delay_relay(tb, wan4, RELAY_PORT, RELAY_PORT + 10000, wan_delay_ms, tb.node("a-gw").ipv4)
            start_delay_relay(tb, wan4, PORT, PORT + 10000, wan_delay_ms, direct_host)
            advertise = ["--relay-advertise", f"{wan4}:{RELAY_PORT + 10000}"]
            direct_host, direct_port = wan4, PORT + 10000
        gateways = {}
        for host, site, url in (
            ("a-gw", "campus-a", dht.proxy_urls[0]),
            ("b-gw", "campus-b", dht.proxy_urls[1]),
        ):
            gateways[host] = tb.spawn(
                host,
                [
                    sys.executable, "-m", "z2z", "run", "--site", site, "--interface", "lan0",
                    "--rendezvous", url, "--type", SERVICE, "--state-dir", str(tb.workdir / f"state-{host}"),
                    "--network-secret", str(secret), "--relay", "always", "--no-election",
                    "--anti-entropy", "3", *(advertise if host == "a-gw" else []),
                ],
                name=f"{host}-z2z",
            )  # fmt: skip
            gateways[host].wait_line(r"bridging ", timeout=45, stream="stderr")
        port = _relayed_port(tb, 60)
        relay_host = tb.node("b-gw").ipv4
        paths = (("direct", direct_host, direct_port), ("relay", relay_host, port))
        results: dict[str, Any] = {"trials": trials, "mb": mb, "pings": pings, "wan_delay_ms": wan_delay_ms}
        for streams in () if wan_delay_ms else (1, 16):
            per = mb if streams == 1 else max(1.0, mb / 4)
            for label, host, p in paths:
                cpu = {h: cpu_seconds(g.pid) for h, g in gateways.items()}
                out = _load(tb, host, p, streams, per, trials, 0)
                results[f"{label}-{streams}"] = out["mb_per_s"]
                if label == "relay":  # CPU seconds per GB carried, each gateway (TLS, copies, the loop)
                    gb = streams * per * trials / 1000
                    results[f"cpu-{streams}"] = {
                        h: (cpu_seconds(g.pid) - cpu[h]) / gb for h, g in gateways.items()
                    }
        for label, host, p in paths:
            for kind, gap in (("connect", 0.0), ("spaced", GAP_MS)):
                before = _warm_counts(tb)
                results[f"{label}-{kind}"] = _load(tb, host, p, 1, 0.001, 0, pings, gap)["connect_ms"]
                if label == "relay":
                    after = _warm_counts(tb)
                    results[f"relay-{kind}-warm"] = [after[0] - before[0], after[1] - before[1]]
        return results


def _warm_counts(tb: Testbed) -> tuple[int, int]:
    """(streams that found a warm channel, streams that handshook) on B so far, from status.json."""
    time.sleep(1.5)  # status.json is rewritten about once a second
    path = tb.workdir / "state-b-gw" / "status.json"
    pool = ((json.loads(path.read_text()).get("relay") or {}).get("pool")) or {}
    return int(pool.get("warm", 0)), int(pool.get("cold", 0))


def _tool(name: str) -> Any:
    from bench.common import TESTS

    return TESTS / "tools" / f"{name}.py"


def _relayed_port(tb: Testbed, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    path = tb.workdir / "state-b-gw" / "status.json"
    while time.monotonic() < deadline:
        try:
            relay = json.loads(path.read_text()).get("relay") or {}
            for imp in relay.get("imports", []):
                if imp["route"] == "relay" and imp["port"]:
                    return int(imp["port"])
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit("bench.relay: B never relayed A's service")


def markdown(r: dict[str, Any], wan: dict[str, Any] | None = None) -> str:
    rows = [
        "| path | 1 stream MB/s (p50) | 16 streams MB/s (p50) |",
        "|---|---:|---:|",
    ]
    for label in ("direct", "relay"):
        rows.append(f"| {label} | {pct(r[f'{label}-1'], 50):.0f} | {pct(r[f'{label}-16'], 50):.0f} |")
    ratio = pct(r["relay-16"], 50) / pct(r["direct-16"], 50)
    ratio1 = pct(r["relay-1"], 50) / pct(r["direct-1"], 50)
    rows += [
        "",
        f"Relay/direct: {ratio1:.2f} with 1 stream, {ratio:.2f} with 16 streams. {r['trials']} trials of "
        f"{r['mb']:g} MB per stream (16 streams: {max(1.0, r['mb'] / 4):g} MB each). CPU per GB "
        f"carried through the relay (1 / 16 streams): "
        + ", ".join(f"{h} {r['cpu-1'][h]:.1f} / {r['cpu-16'][h]:.1f} s" for h in ("b-gw", "a-gw"))
        + ".",
        "",
        "| WAN round trip | connects | direct p50 / p95 (ms) | relay p50 / p95 (ms) | added p50 / p95 (ms) "
        "| target (ms) | relay streams on a warm channel |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for res in (r, wan) if wan else (r,):
        rtt = 2 * res["wan_delay_ms"]
        for kind, what in (("connect", "back to back"), ("spaced", f"{GAP_MS:g} ms apart")):
            d, x = res[f"direct-{kind}"], res[f"relay-{kind}"]
            add50, add95 = pct(x, 50) - pct(d, 50), pct(x, 95) - pct(d, 95)
            warm, cold = res[f"relay-{kind}-warm"]
            rows.append(
                f"| {rtt:g} ms | {what} ({len(x)}) | {pct(d, 50):.2f} / {pct(d, 95):.2f} | "
                f"{pct(x, 50):.2f} / {pct(x, 95):.2f} | {add50:.2f} / {add95:.2f} | ≤ {5 + rtt:g} | "
                f"{warm} of {warm + cold} |"
            )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--mb", type=float, default=20.0)
    p.add_argument("--pings", type=int, default=300)
    p.add_argument("--no-wan", action="store_true", help="skip the connects over the emulated WAN")
    p.add_argument("--short", action="store_true", help="2 trials of 5 MB, 10 connects")
    a = p.parse_args()
    if a.short:
        a.trials, a.mb, a.pings = 2, 5.0, 10
    out = run(a.trials, a.mb, a.pings)
    wan = None if a.no_wan else run(0, 0.0, a.pings, WAN_DELAY_MS)
    print(markdown(out, wan))


if __name__ == "__main__":
    main()
