"""A quiet link: what an island of 1, 3 and 10 gateways sends on its LAN at idle.

Each setup is a fresh testbed: N real gateways (`bench.multigw`, one process,
N addresses on a-gw's ``lan0``) elect a leader on campus A with the testbed's
two-node dhtnode rendezvous; nothing is bridged.  After `settle` seconds (the
election and the mDNS stacks' announcement bursts are over) nftables counters in
the gateways' namespace (output hook, so every packet the island sends, counted
once) measure for `window` seconds:

- mDNS multicast: everything sent to 224.0.0.251:5353 (announcements, goodbyes,
  queries of every type, answers) — the figure the issue bounds at 100 B/s per island;
- unicast UDP to the link's subnet other than mDNS: the island's heartbeats.

The ``legacy`` setup runs the same gateways without heartbeat sockets (they
announce `_z2z._udp` every second, as before this change), for comparison in
the same run.  Counts bytes, not time: it may run without the shared lock.

    python -m bench.quiet [--short] [--sizes 1 3 10]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from typing import Any

from bench.common import REPO, Testbed, environment

T = "_ipp._tcp"
TABLE = "z2zquiet"


def _nft(tb: Testbed, *args: str) -> str:
    return tb.node("a-gw").run("nft", *args).stdout


def _counters(tb: Testbed) -> dict[str, tuple[int, int]]:
    """(packets, bytes) of each commented counter rule."""
    doc = json.loads(_nft(tb, "-j", "list", "table", "inet", TABLE))
    out: dict[str, tuple[int, int]] = {}
    for item in doc["nftables"]:
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
        out[rule["comment"]] = (counter["packets"], counter["bytes"])
    return out


def _leaders(tb: Testbed, n: int) -> int:
    count = 0
    for i in range(n):
        try:
            doc = json.loads((tb.workdir / "state" / str(i) / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        count += bool(doc.get("bridging"))
    return count


def one(n: int, legacy: bool, settle: float, window: float) -> dict[str, Any]:
    with Testbed() as tb:
        dht = tb.start_dht()
        node = tb.node("a-gw")
        addrs = [node.campus.addr4(2 + i) for i in range(n)]
        for a in addrs[1:]:
            node.ns.ip("addr", "add", f"{a}/24", "dev", "lan0")
        subnet = str(ipaddress.ip_network(f"{node.ipv4}/24", strict=False))
        _nft(tb, "add", "table", "inet", TABLE)
        _nft(tb, "add", "chain", "inet", TABLE, "out", "{ type filter hook output priority 0; }")
        _nft(tb, "add", "rule", "inet", TABLE, "out", "ip", "daddr", "224.0.0.251", "udp", "dport", "5353",
             "counter", "comment", '"mdns"')  # fmt: skip
        _nft(tb, "add", "rule", "inet", TABLE, "out", "ip", "daddr", subnet, "udp", "dport", "!=", "5353",
             "udp", "sport", "!=", "5353", "counter", "comment", '"unicast"')  # fmt: skip
        proc = tb.spawn(
            "a-gw",
            [sys.executable, "-m", "bench.multigw", "--site", "campus-a", "--rendezvous", dht.proxy_urls[0],
             "--type", T, "--state-root", str(tb.workdir / "state"),
             *(["--legacy-election"] if legacy else []), *addrs],
            cwd=REPO,
            name="a-multigw",
        )  # fmt: skip
        proc.wait_line("all started", timeout=120, stream="stdout")
        deadline = time.time() + 60
        while _leaders(tb, n) != 1 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(settle)
        before, t0 = _counters(tb), time.monotonic()
        time.sleep(window)
        after, t1 = _counters(tb), time.monotonic()
        seconds = t1 - t0
        leaders = _leaders(tb, n)
        proc.signal(2)
        proc.wait(timeout=30)
    res: dict[str, Any] = {"gateways": n, "legacy": legacy, "seconds": round(seconds, 1), "leaders": leaders}
    for k in ("mdns", "unicast"):
        res[f"{k}_pps"] = (after[k][0] - before[k][0]) / seconds
        res[f"{k}_bps"] = (after[k][1] - before[k][1]) / seconds
    return res


def run(sizes: tuple[int, ...] = (1, 3, 10), settle: float = 30.0, window: float = 120.0) -> dict[str, Any]:
    rows = [one(n, False, settle, window) for n in sizes]
    rows.append(one(3, True, settle, window))
    return {"environment": environment(), "settle": settle, "window": window, "rows": rows}


def table(res: dict[str, Any]) -> str:
    lines = [
        f"Idle, {res['settle']:g} s after the election, one {res['window']:g} s window per setup.",
        "",
        "| gateways on the link | election | leaders | mDNS multicast, island | per gateway "
        "| heartbeats (unicast), island |",
        "|---:|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in res["rows"]:
        kind = "before: multicast every 1 s" if r["legacy"] else "heartbeats"
        lines.append(
            f"| {r['gateways']} | {kind} | {r['leaders']} "
            f"| {r['mdns_bps']:.1f} B/s ({r['mdns_pps']:.2f} pkt/s) "
            f"| {r['mdns_bps'] / r['gateways']:.1f} B/s "
            f"| {r['unicast_bps']:.0f} B/s ({r['unicast_pps']:.1f} pkt/s) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10])
    p.add_argument("--settle", type=float, default=30.0)
    p.add_argument("--window", type=float, default=120.0)
    p.add_argument("--short", action="store_true", help="settle 15 s, window 30 s")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    settle, window = (15.0, 30.0) if a.short else (a.settle, a.window)
    out = run(tuple(a.sizes), settle, window)
    print(table(out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
