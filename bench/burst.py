"""A busy link: 3,000 instances from 50 publisher processes in one burst on campus A, until B lists them.

Run from the repository root (as root; it times, so under the shared testbed lock, which
``--lock PATH`` takes around each trial):
``.venv/bin/python -m bench.burst [--trials 3] [--publishers 50] [--per-publisher 60] [--lock PATH]``

Method.  A fresh namespace testbed per trial (two campus LANs, a real two-node
OpenDHT network in ``wan``), a private network, both gateways ``z2z run
--no-election`` with the python-zeroconf link, ``--max-services-per-site 4096``
(the default 2,048 would refuse a 3,000-service site), each on its campus's
dhtnode REST proxy, as in ``tests/e2e/test_burst_e2e.py``: `--publishers`
python-zeroconf responders (``tests/tools/mdns_printer.py``, each its own
process and host name) on ``a-printer`` announce `--per-publisher` instances
each at once.  Timed from the burst: campus A's gateway exporting all of them
and campus B's importing all of them (their status.json, polled), and the last
one listed on campus B's link by ``avahi-browse -pk _ipp._tcp`` against a real
avahi-daemon on ``b-client`` (``cache-entries-max`` raised), not by
python-zeroconf.  Both gateways' ``link_kernel_drops`` (datagrams their mDNS
socket lost, from the kernel) are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import SERVICE_TYPE, Testbed, locked, skip_reason, summary, wait_until
from bench.scale import LinkCount, gateway, status_of


def one(publishers: int, per: int, timeout: float) -> dict[str, Any]:
    """One burst on a fresh testbed."""
    from support.avahi_helpers import restart_avahi

    from z2z.app.keys import new_secret

    total = publishers * per
    with Testbed() as tb:
        dht = tb.start_dht()
        secret = str(tb.workdir / "network.secret")
        new_secret(secret, network="z2z")
        tb.start_avahi("b-client")
        restart_avahi(tb, "b-client", crash=False, extra_conf="cache-entries-max=65536")
        quota = ("--max-services-per-site", str(max(4096, 2 * total)))
        gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], secret, quota)
        gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], secret, quota)
        browse = tb.spawn("b-client", ["avahi-browse", "-pk", SERVICE_TYPE], env=tb.avahis["b-client"].env,
                          name="b-client-browse")  # fmt: skip
        count = LinkCount(browse)
        address = tb.node("a-printer").ipv4
        printers = []
        for k in range(publishers):
            argv = ["--control", "--no-probe", "--type", SERVICE_TYPE, "--host", f"burst{k:02d}",
                    "--address", address, "--txt", "txtvers=1", "--txt", "rp=ipp/print"]  # fmt: skip
            pr = tb.spawn_tool("a-printer", "mdns_printer", *argv, name=f"a-pr-{k:02d}", stdin=True)
            printers.append(pr)
        for pr in printers:
            pr.wait_event("ready", timeout=60)
        time.sleep(2.0)
        t_burst = time.time()
        for k, pr in enumerate(printers):
            pr.send(f"burst {per} Burst {k:02d}-")
        marks: dict[str, float] = {}

        def step() -> bool:
            now = time.time()
            if "exported" not in marks and len(status_of(tb, "a-gw").get("exported", [])) >= total:
                marks["exported"] = now
            if "imported" not in marks and len(status_of(tb, "b-gw").get("imported", [])) >= total:
                marks["imported"] = now
            return count.poll() >= total and len(marks) == 2

        wait_until(step, timeout, step=0.5)
        ups = count.times("Burst ")
        time.sleep(2.0)
        st_a, st_b = status_of(tb, "a-gw"), status_of(tb, "b-gw")
        out = {
            "total": total,
            "announced": sum(1 for pr in printers for e in pr.events() if e.get("event") == "registered"),
            "exported_by_A": len(st_a.get("exported", [])),
            "imported_by_B": len(st_b.get("imported", [])),
            "listed_on_B": len(ups),
            "burst_to_all_exported_s": marks["exported"] - t_burst if "exported" in marks else None,
            "burst_to_all_imported_s": marks["imported"] - t_burst if "imported" in marks else None,
            "burst_to_last_listed_s": ups[-1] - t_burst if len(ups) >= total else None,
            "kernel_drops_A": st_a.get("link_kernel_drops"),
            "kernel_drops_B": st_b.get("link_kernel_drops"),
            "rendezvous_ok_B": st_b.get("rendezvous_ok"),
        }
        for pr in printers:  # at once: 3,000 goodbyes one by one would take minutes
            pr.kill()
    print(f"burst: {out}", file=sys.stderr, flush=True)
    return out


def run(
    *,
    trials: int = 3,
    publishers: int = 50,
    per_publisher: int = 60,
    timeout: float = 180.0,
    lock: str | None = None,
) -> dict[str, Any]:
    """`trials` bursts, each on a fresh testbed and, given `lock`, holding that flock."""
    reason = skip_reason()
    if reason:
        raise SystemExit(f"burst benchmark: {reason}")
    runs = []
    for _ in range(trials):
        with locked(lock, []):
            runs.append(one(publishers, per_publisher, timeout))
    return {"publishers": publishers, "per_publisher": per_publisher, "timeout_s": timeout, "runs": runs}


def markdown(r: dict[str, Any]) -> str:
    runs = r["runs"]
    total = r["publishers"] * r["per_publisher"]

    def f(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    lines = [
        f"{total:,} instances from {r['publishers']} python-zeroconf publishers ({r['per_publisher']} each) "
        f"in one burst on campus A, a fresh testbed per trial; listed on B = avahi-browse on `b-client`; "
        f"– = not all within {r['timeout_s']:g} s.",
        "",
        "| trial | announced | exported by A | imported by B | listed on B | burst → all exported s "
        "| → all imported s | → last listed on B s | kernel drops A | kernel drops B |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, x in enumerate(runs, 1):
        lines.append(
            f"| {i} | {x['announced']:,} | {x['exported_by_A']:,} | {x['imported_by_B']:,} | "
            f"{x['listed_on_B']:,} | {f(x['burst_to_all_exported_s'])} | {f(x['burst_to_all_imported_s'])} | "
            f"{f(x['burst_to_last_listed_s'])} | {x['kernel_drops_A']} | {x['kernel_drops_B']} |"
        )
    last = [x["burst_to_last_listed_s"] for x in runs if x["burst_to_last_listed_s"] is not None]
    if last:
        s = summary(last)
        lines += [
            "",
            f"Burst → last listed on B: median {s['p50']:.1f} s, max {s['max']:.1f} s over {len(last)} of "
            f"{len(runs)} trials"
            + ("." if len(last) == len(runs) else f" (in the others not all within {r['timeout_s']:g} s)."),
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--publishers", type=int, default=50)
    p.add_argument("--per-publisher", type=int, default=60)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--lock", help="flock this file around each trial (the shared testbed lock)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    r = run(trials=a.trials, publishers=a.publishers, per_publisher=a.per_publisher, timeout=a.timeout,
            lock=a.lock)  # fmt: skip
    print(markdown(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2, default=str)


if __name__ == "__main__":
    main()
