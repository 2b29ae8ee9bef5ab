"""Formation at scale with real processes: ≥ 60 gateways in 20 islands.

Each island is one campus LAN of the namespace testbed with one printer and three
gateways (three addresses on one host's ``lan0``, run by `bench.multigw` in one
process; see there why).  All islands share the testbed's real two-node dhtnode
rendezvous.  Measured, from the moment every gateway process reported started
(t0; process start-up is reported separately):

- islands: every island has exactly one bridging leader;
- structure: all leaders report one and the same structure id and bridge via it;
- converged: every leader imports every other site's printer (services visible everywhere);
- traffic: packets and bytes each island host sent on its LAN interface (kernel
  counters of ``lan0``, so mDNS, rendezvous and DHT traffic all count), per gateway.

    python -m bench.formation [--islands 20] [--per-island 3] [--trials 1]
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from typing import Any

from bench.common import REPO, Testbed, environment, summary

T = "_ipp._tcp"


def lan_counters(tb: Testbed, host: str) -> tuple[int, int]:
    out = (
        tb.node(host)
        .run("cat", "/sys/class/net/lan0/statistics/tx_packets", "/sys/class/net/lan0/statistics/tx_bytes")
        .stdout.split()
    )
    return int(out[0]), int(out[1])


def status(tb: Testbed, letter: str, i: int) -> dict[str, Any]:
    try:
        return json.loads((tb.workdir / f"state-{letter}" / str(i) / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def one_trial(islands: int, per_island: int, timeout: float = 120.0) -> dict[str, Any]:
    letters = list(string.ascii_lowercase[:islands])
    hosts = {f"{c}-gw": (c, 2) for c in letters} | {f"{c}-printer": (c, 10) for c in letters}
    with Testbed(hosts=hosts) as tb:
        setup = tb.setup_seconds
        dht = tb.start_dht()
        for c in letters:
            node = tb.node(f"{c}-gw")
            for i in range(1, per_island):
                node.ns.ip("addr", "add", f"{node.campus.addr4(2 + i)}/24", "dev", "lan0")
        for c in letters:
            tb.spawn_tool(
                f"{c}-printer",
                "mdns_printer",
                "--name",
                f"Printer {c}",
                "--type",
                T,
                "--address",
                tb.node(f"{c}-printer").ipv4,
                "--no-probe",
            )
        for c in letters:
            tb.procs[-islands + letters.index(c)].wait_event("registered", timeout=60)
        before = {c: lan_counters(tb, f"{c}-gw") for c in letters}
        t_spawn = time.time()
        procs = {}
        for c in letters:
            node = tb.node(f"{c}-gw")
            addrs = [node.campus.addr4(2 + i) for i in range(per_island)]
            procs[c] = tb.spawn(
                f"{c}-gw",
                [
                    sys.executable,
                    "-m",
                    "bench.multigw",
                    "--site",
                    f"campus-{c}",
                    "--rendezvous",
                    dht.proxy_urls[letters.index(c) % 2],
                    "--type",
                    T,
                    "--state-root",
                    str(tb.workdir / f"state-{c}"),
                    *addrs,
                ],
                cwd=REPO,
                name=f"{c}-multigw",
            )
        for c in letters:
            procs[c].wait_line("all started", timeout=timeout, stream="stdout")
        t0 = time.time()
        marks: dict[str, float] = {}
        want_sites = {f"campus-{c}" for c in letters}
        while time.time() - t0 < timeout and "done" not in marks:
            st = {(c, i): status(tb, c, i) for c in letters for i in range(per_island)}
            leaders = {c: [i for i in range(per_island) if st[(c, i)].get("bridging")] for c in letters}
            now = time.time() - t0
            if "islands" not in marks and all(len(v) == 1 for v in leaders.values()):
                marks["islands"] = now
            if "islands" in marks:
                lead = [st[(c, leaders[c][0])] for c in letters if len(leaders[c]) == 1]
                structs = {(s.get("stages") or {}).get("structure") for s in lead}
                vias = {s.get("bridging_via") for s in lead}
                if (
                    "structure" not in marks
                    and len(lead) == islands
                    and len(structs) == 1
                    and "" not in structs
                    and vias == {"dht"}
                ):
                    marks["structure"] = now
                seen = [
                    {imp.rsplit("(from ", 1)[1].rstrip(")") for imp in s.get("imported", [])} | {s["site"]}
                    for s in lead
                ]
                if len(lead) == islands and all(x == want_sites for x in seen):
                    marks.setdefault("converged", now)
                    if "structure" in marks:
                        marks["done"] = now  # one leaders' DHT and every service everywhere
            time.sleep(0.1)
        after = {c: lan_counters(tb, f"{c}-gw") for c in letters}
        if "done" not in marks:  # say what was missing
            for c in letters:
                for i in range(per_island):
                    s = status(tb, c, i)
                    if s.get("bridging"):
                        structure = (s.get("stages") or {}).get("structure")
                        print(
                            f"campus-{c}/{i}: via {s.get('bridging_via')} structure {structure} "
                            f"imports {len(s.get('imported', []))}",
                            file=sys.stderr,
                        )
        elapsed = time.time() - t0
        packets = [(after[c][0] - before[c][0]) / per_island for c in letters]
        octets = [(after[c][1] - before[c][1]) / per_island for c in letters]
        return {
            "islands": islands,
            "gateways": islands * per_island,
            "testbed_setup_s": setup,
            "process_start_s": t0 - t_spawn,
            "marks": marks,
            "observed_s": elapsed,
            "packets_per_gateway": summary(packets),
            "bytes_per_gateway": summary(octets),
        }


def run(islands: int = 20, per_island: int = 3, trials: int = 1) -> dict[str, Any]:
    results = [one_trial(islands, per_island) for _ in range(trials)]
    done = [r["marks"].get("done", float("nan")) for r in results]
    return {"environment": environment(), "trials": results, "done": summary(done)}


def table(res: dict[str, Any]) -> str:
    rows = [
        "| trial | gateways | processes up | one leader per island | all services everywhere "
        "| one structure | both | packets / gateway | kB / gateway |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in enumerate(res["trials"], 1):
        m = r["marks"]
        nan = float("nan")
        rows.append(
            f"| {n} | {r['gateways']} | {r['process_start_s']:.1f} s | {m.get('islands', nan):.2f} s "
            f"| {m.get('converged', nan):.2f} s | {m.get('structure', nan):.2f} s "
            f"| {m.get('done', nan):.2f} s "
            f"| {r['packets_per_gateway']['mean']:.0f} | {r['bytes_per_gateway']['mean'] / 1000:.0f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--islands", type=int, default=20)
    p.add_argument("--per-island", type=int, default=3)
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    out = run(a.islands, a.per_island, a.trials)
    print(table(out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
