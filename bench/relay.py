"""Throughput and connect latency through the relay, beside the direct path (``python -m bench.relay``).

On the routed two-campus testbed (where the direct path exists), gateways of a
private network run with ``--relay always``: B's gateway publishes A's service
as a proxy on its own address, carried over TLS 1.3 to A's gateway.  From
b-client, `bench.relay_load` sends to the service directly (a-printer) and
through the relay (b-gw's proxy port): MB/s with 1 and 16 parallel streams
(p50 over trials) and the time from connect() to the first answer (p50/p95),
whose difference is what the relay adds.  ``--short`` is the quick mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.common import REPO, Testbed, pct, skip_reason
from z2z.app import keys

LOAD = REPO / "bench" / "relay_load.py"  # run as a script inside the namespaces
SERVICE = "_bench._tcp"
PORT = 9000


def _load(
    tb: Testbed, host: str, port: int, streams: int, mb: float, trials: int, pings: int
) -> dict[str, Any]:
    r = tb.node("b-client").run(
        sys.executable, str(LOAD), "load", host, str(port),
        "--streams", str(streams), "--mb", str(mb), "--trials", str(trials), "--pings", str(pings),
        timeout=600,
    )  # fmt: skip
    return json.loads(r.stdout.splitlines()[-1])


def run(trials: int = 5, mb: float = 20.0, pings: int = 50) -> dict[str, Any]:
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
        for host, site, url in (
            ("a-gw", "campus-a", dht.proxy_urls[0]),
            ("b-gw", "campus-b", dht.proxy_urls[1]),
        ):
            tb.spawn(
                host,
                [
                    sys.executable, "-m", "z2z", "run", "--site", site, "--interface", "lan0",
                    "--rendezvous", url, "--type", SERVICE, "--state-dir", str(tb.workdir / f"state-{host}"),
                    "--network-secret", str(secret), "--relay", "always", "--no-election",
                    "--anti-entropy", "3",
                ],
                name=f"{host}-z2z",
            ).wait_line(r"bridging ", timeout=45, stream="stderr")  # fmt: skip
        port = _relayed_port(tb, 60)
        relay_host = tb.node("b-gw").ipv4
        direct_host = tb.node("a-printer").ipv4
        results: dict[str, Any] = {"trials": trials, "mb": mb, "pings": pings}
        for streams in (1, 16):
            per = mb if streams == 1 else max(1.0, mb / 4)
            for label, host, p in (("direct", direct_host, PORT), ("relay", relay_host, port)):
                out = _load(tb, host, p, streams, per, trials, pings if streams == 1 else 0)
                results[f"{label}-{streams}"] = out["mb_per_s"]
                if streams == 1:
                    results[f"{label}-connect"] = out["connect_ms"]
        return results


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


def markdown(r: dict[str, Any]) -> str:
    rows = [
        "| path | 1 stream MB/s (p50) | 16 streams MB/s (p50) | connect → first answer p50 / p95 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for label in ("direct", "relay"):
        c = r[f"{label}-connect"]
        rows.append(
            f"| {label} | {pct(r[f'{label}-1'], 50):.0f} | {pct(r[f'{label}-16'], 50):.0f} | "
            f"{pct(c, 50):.2f} / {pct(c, 95):.2f} |"
        )
    added50 = pct(r["relay-connect"], 50) - pct(r["direct-connect"], 50)
    added95 = pct(r["relay-connect"], 95) - pct(r["direct-connect"], 95)
    ratio = pct(r["relay-16"], 50) / pct(r["direct-16"], 50)
    rows.append("")
    rows.append(
        f"Relay/direct with 16 streams: {ratio:.2f}. Connect latency added by the relay: "
        f"p50 {added50:.2f} ms, p95 {added95:.2f} ms. {r['trials']} trials of {r['mb']:g} MB per stream "
        f"(16 streams: {max(1.0, r['mb'] / 4):g} MB each), {r['pings']} connects."
    )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--mb", type=float, default=20.0)
    p.add_argument("--pings", type=int, default=50)
    p.add_argument("--short", action="store_true", help="2 trials of 5 MB, 10 connects")
    a = p.parse_args()
    if a.short:
        a.trials, a.mb, a.pings = 2, 5.0, 10
    out = run(a.trials, a.mb, a.pings)
    print(markdown(out))


if __name__ == "__main__":
    main()
