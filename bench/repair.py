"""Repair at 1,000 services: a push lost while campus B's rendezvous is cut off, and how soon B shows it.

Run from the repository root (as root):
``.venv/bin/python -m bench.repair [--trials 5] [--window 60] [--start-after 900] [--lock PATH]``

Method.  One namespace testbed (two campus LANs, a real two-node OpenDHT network
in ``wan``), a private network, both gateways ``z2z run --no-election`` with the
default quotas and the default ``anti-entropy`` period (30 s), each on its
campus's dhtnode REST proxy, as in `bench.scale`:

1. `--publishers` python-zeroconf printers on ``a-printer`` announce `--services`
   instances at once; campus A's gateway exports them, campus B's imports them
   (the time from the burst to the last one visible on B and both gateways'
   ``link_kernel_drops`` are reported too).
2. The testbed then idles until `--start-after` seconds after the gateways
   started (default 900 s: the issue asks for the repair 15 minutes after start,
   when piled-up versions used to push the anti-entropy ``get`` over its cap).
3. Each trial cuts campus B's gateway off its rendezvous: an nftables table in
   ``b-gw``'s namespace drops every TCP packet to or from the REST proxies'
   ports (both directions, so neither side is told: the listen stream stays
   open and silent, as on a dead uplink).  Two seconds in, one more printer
   instance (``Repair Tn``) is registered on campus A, whose gateway exports it
   as usual: its push towards B is lost.  After `--window` seconds the table is
   deleted, and the trial measures the time from then until the instance is
   listed on campus B.

What campus B's link shows is counted by ``avahi-browse -pk _ipp._tcp`` against
a real avahi-daemon on ``b-client`` (`bench.scale.LinkCount`), not by
python-zeroconf.  A trial is valid only if the instance was *not* listed on B
during the cut (the push really was lost) and campus A exported it during the
cut.  Also recorded per trial, from B's ``status.json``: whether
``rendezvous_ok`` turned false during the cut and is true again after the
repair, ``answers_too_big`` (must stay empty), and how many anti-entropy rounds
got the type key in full or were skipped by the digests; from the nftables byte
counters of `bench.upkeep` in ``b-gw`` (REST-proxy TCP, into B): the bytes from
the end of the cut until the repair was listed, and, before the first trial, the
bytes per anti-entropy period at steady state (summaries read, listen refreshes).

`--lock PATH` takes an exclusive ``flock`` on PATH (the shared testbed lock)
around the heavy or timed parts only (start and burst, then each trial), and
releases it while the testbed idles and between trials, so that other
namespace tests can run meanwhile; without it the whole run is unlocked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import SERVICE_TYPE, Testbed, burst_printers, locked, skip_reason, summary, wait_until
from bench.scale import LinkCount, gateway, status_of, wait_visible
from bench.upkeep import install_counters, read_counters

ANTI_ENTROPY = 30.0  # z2z's default `anti-entropy` period; the gateways run with the defaults
JITTER = 0.1  # the periodic job's jitter, a share of the period (z2z/app/gateway.py)


def listed(count: LinkCount, instance: str) -> float | None:
    """When `instance` was first listed on the link (None: not, or withdrawn since)."""
    from support.avahi_helpers import unescape

    count.poll()
    for name, t in count.seen.items():
        if unescape(name) == instance and name not in count.gone:
            return t
    return None


def exported(tb: Testbed, host: str, instance: str) -> bool:
    return f"{instance}.{SERVICE_TYPE}" in status_of(tb, host).get("exported", [])


def listen_trial(
    tb: Testbed, k: int, printer: Any, count: LinkCount, ports: Sequence[int], timeout: float
) -> dict[str, Any]:
    """B's listen goes deaf (its data dropped, the connection kept); a new instance on A; the time
    from A exporting it to B listing it, which only an anti-entropy round can bring."""
    from support.listen_cut import cut, heal, listen_ports, lost_packets

    instance = f"Lost push L{k}"
    listens = listen_ports(tb, "b-gw", ports)
    if not listens:
        return {"mode": "listen", "instance": instance, "error": "no listen connection found"}
    before, bytes0 = status_of(tb, "b-gw"), read_counters(tb, "b-gw")
    cut(tb, "b-gw", ports, listens)
    t_cut = time.time()
    printer.send(f"register {instance}")
    ok_during: set[bool] = set()
    t_export: float | None = None
    deadline = t_cut + timeout
    while time.time() < deadline and listed(count, instance) is None:
        st = status_of(tb, "b-gw")
        if "rendezvous_ok" in st:
            ok_during.add(bool(st["rendezvous_ok"]))
        if t_export is None and exported(tb, "a-gw", instance):
            t_export = time.time()
        time.sleep(0.1)
    t_seen = listed(count, instance)
    bytes1 = read_counters(tb, "b-gw")
    still = listen_ports(tb, "b-gw", ports)
    dropped = lost_packets(tb, "b-gw")
    heal(tb, "b-gw")
    time.sleep(3.0)  # the status file is rewritten once a second at most
    after = status_of(tb, "b-gw")
    out = {
        "mode": "listen",
        "instance": instance,
        "listen_ports": listens,
        "listen_kept": all(p in still for p in listens),  # no reconnect: the listen never replayed
        "pushes_dropped_packets": dropped,
        "exported_by_A": t_export is not None,
        "register_to_export_s": t_export - t_cut if t_export is not None else None,
        "repair_s": t_seen - t_export if t_seen is not None and t_export is not None else None,
        "register_to_listed_s": t_seen - t_cut if t_seen is not None else None,
        "rendezvous_ok_during_cut": sorted(ok_during),
        "rendezvous_ok_after": after.get("rendezvous_ok"),
        "answers_too_big_after": after.get("answers_too_big"),
        "full_gets": delta(before, after, "anti_entropy_full_gets"),
        "skipped_rounds": delta(before, after, "anti_entropy_skipped"),
        "proxy_bytes_in": bytes1.get("proxy_in", 0) - bytes0.get("proxy_in", 0),
        "imported_after": len(after.get("imported", [])),
    }
    print(f"repair: listen trial {k}: {out}", file=sys.stderr, flush=True)
    return out


def delta(before: dict[str, Any], after: dict[str, Any], key: str) -> int | None:
    if key not in before or key not in after:
        return None
    return int(after[key]) - int(before[key])


def uplink_trial(
    tb: Testbed, k: int, printer: Any, count: LinkCount, ports: Sequence[int], window: float, timeout: float
) -> dict[str, Any]:
    """B cut off its proxy for `window` s, a new instance on A; the repair time once the cut ends."""
    from support.listen_cut import cut, heal, listen_ports

    instance = f"Repair T{k}"
    listens = listen_ports(tb, "b-gw", ports)
    before = status_of(tb, "b-gw")
    cut(tb, "b-gw", ports)
    t_cut = time.time()
    time.sleep(2.0)
    printer.send(f"register {instance}")
    ok_during: set[bool] = set()
    seen_during = False
    exported_during = False
    while time.time() - t_cut < window:
        st = status_of(tb, "b-gw")
        if "rendezvous_ok" in st:
            ok_during.add(bool(st["rendezvous_ok"]))
        seen_during = seen_during or listed(count, instance) is not None
        exported_during = exported_during or exported(tb, "a-gw", instance)
        time.sleep(0.5)
    seen_during = seen_during or listed(count, instance) is not None
    bytes0 = read_counters(tb, "b-gw")
    heal(tb, "b-gw")
    t_heal = time.time()
    wait_until(lambda: listed(count, instance) is not None, timeout, step=0.1)
    t_seen = listed(count, instance)
    bytes1 = read_counters(tb, "b-gw")
    # How long status.json goes on saying the rendezvous is down once it answers again.
    ok_again = wait_until(lambda: status_of(tb, "b-gw").get("rendezvous_ok") is True, timeout, step=0.2)
    t_ok = time.time() if ok_again else None
    time.sleep(1.5)  # the status file is rewritten once a second at most
    after = status_of(tb, "b-gw")
    still = set(listen_ports(tb, "b-gw", ports))

    out = {
        "mode": "uplink",
        "instance": instance,
        "lost": not seen_during,
        "exported_by_A_during_cut": exported_during,
        "repair_s": t_seen - t_heal if t_seen is not None and t_seen >= t_heal else None,
        "rendezvous_ok_during_cut": sorted(ok_during),
        "rendezvous_ok_after": after.get("rendezvous_ok"),
        "rendezvous_ok_again_s": t_ok - t_heal if t_ok is not None else None,
        "listen_ports": listens,  # none found: the listen was younger than LISTEN_IDLE_MS, unknown
        "listen_reconnected": (not set(listens) <= still) if listens else None,
        "answers_too_big_after": after.get("answers_too_big"),
        "full_gets": delta(before, after, "anti_entropy_full_gets"),
        "skipped_rounds": delta(before, after, "anti_entropy_skipped"),
        "proxy_bytes_in_heal_to_listed": bytes1.get("proxy_in", 0) - bytes0.get("proxy_in", 0),
        "imported_after": len(after.get("imported", [])),
    }
    print(f"repair: uplink trial {k}: {out}", file=sys.stderr, flush=True)
    return out


def run(
    *,
    services: int = 1000,
    publishers: int = 20,
    trials: int = 5,
    window: float = 60.0,
    start_after: float = 900.0,
    gap: float = 20.0,
    steady: float = 120.0,
    timeout: float = 300.0,
    lock: str | None = None,
) -> dict[str, Any]:
    reason = skip_reason()
    if reason:
        raise SystemExit(f"repair benchmark: {reason}")
    from support.avahi_helpers import restart_avahi

    from z2z.app.keys import new_secret

    out: dict[str, Any] = {
        "services": services,
        "publishers": publishers,
        "window_s": window,
        "start_after_s": start_after,
        "anti_entropy_s": ANTI_ENTROPY,
        "lock": lock,
    }
    waits: list[float] = []
    results: list[dict[str, Any]] = []
    with Testbed() as tb:
        with locked(lock, waits):
            tb.start_dht()
            secret = str(tb.workdir / "network.secret")
            new_secret(secret, network="z2z")
            tb.start_avahi("b-client")
            restart_avahi(tb, "b-client", crash=False, extra_conf="cache-entries-max=65536")
            dht = tb.dht
            assert dht is not None
            urls, ports = dht.proxy_urls, list(dht.proxy_ports)
            gw_a = gateway(tb, "a-gw", "campus-a", urls[0], secret)
            gw_b = gateway(tb, "b-gw", "campus-b", urls[1], secret)
            t_start = time.time()
            install_counters(tb, "b-gw", ports)
            browse = tb.spawn("b-client", ["avahi-browse", "-pk", SERVICE_TYPE],
                              env=tb.avahis["b-client"].env, name="b-client-browse")  # fmt: skip
            count = LinkCount(browse)
            printers, t_burst = burst_printers(tb, services, publishers)
            ok, _ = wait_visible(count, services, timeout)
            ups = count.times("Campus P")
            st_a, st_b = status_of(tb, "a-gw"), status_of(tb, "b-gw")
            out["burst"] = {
                "reached": ok,
                "visible": len(ups),
                "burst_to_last_s": ups[-1] - t_burst if ups else None,
                "kernel_drops_A": st_a.get("link_kernel_drops"),
                "kernel_drops_B": st_b.get("link_kernel_drops"),
            }
            print(f"repair: burst: {out['burst']}", file=sys.stderr, flush=True)
            if not ok:
                raise SystemExit(f"repair benchmark: only {count.poll()} of {services} reached campus B")

        # Idle (unlocked) until `start_after` s after start; the last `steady` s are counted.
        wait = t_start + start_after - steady - time.time()
        if wait > 0:
            time.sleep(wait)
        st0, c0, t0 = status_of(tb, "b-gw"), read_counters(tb, "b-gw"), time.time()
        time.sleep(max(0.0, t_start + start_after - time.time()))
        st1, c1, t1 = status_of(tb, "b-gw"), read_counters(tb, "b-gw"), time.time()
        periods = (t1 - t0) / ANTI_ENTROPY
        out["steady"] = {
            "seconds": t1 - t0,
            "proxy_in_bytes_per_period": (c1.get("proxy_in", 0) - c0.get("proxy_in", 0)) / periods,
            "proxy_out_bytes_per_period": (c1.get("proxy_out", 0) - c0.get("proxy_out", 0)) / periods,
            "full_gets": st1.get("anti_entropy_full_gets", 0) - st0.get("anti_entropy_full_gets", 0),
            "skipped_rounds": st1.get("anti_entropy_skipped", 0) - st0.get("anti_entropy_skipped", 0),
            "rendezvous_ok": st1.get("rendezvous_ok"),
            "answers_too_big": st1.get("answers_too_big"),
            "visible_on_B": count.poll(),
        }
        print(f"repair: steady: {out['steady']}", file=sys.stderr, flush=True)

        printer = printers[0][0]
        for k in range(1, trials + 1):
            with locked(lock, waits):
                if k == 1:
                    out["first_trial_after_start_s"] = time.time() - t_start
                results.append(listen_trial(tb, k, printer, count, ports, timeout))
            time.sleep(gap)
        out["listen_trials"] = results
        results = []
        for k in range(1, trials + 1):
            with locked(lock, waits):
                results.append(uplink_trial(tb, k, printer, count, ports, window, timeout))
            time.sleep(gap)
        out["trials"] = results
        st_b = status_of(tb, "b-gw")
        out["B_status"] = {
            "imported": len(st_b.get("imported", [])),
            "rendezvous_ok": st_b.get("rendezvous_ok"),
            "answers_too_big": st_b.get("answers_too_big"),
            "anti_entropy_full_gets": st_b.get("anti_entropy_full_gets"),
            "anti_entropy_skipped": st_b.get("anti_entropy_skipped"),
            "kernel_drops": st_b.get("link_kernel_drops"),
        }
        out["B_warnings"] = [line for line in gw_b.stderr().splitlines() if " WARNING " in line][:20]
        out["A_warnings"] = [line for line in gw_a.stderr().splitlines() if " WARNING " in line][:20]
        out["lock_waits_s"] = waits
        for pr, _ in printers:
            pr.kill()
    return out


def markdown(r: dict[str, Any]) -> str:
    bound = r["anti_entropy_s"] * (1 + JITTER)

    def f(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    def stats(times: list[float], n: int, what: str) -> str:
        if not times:
            return f"{what}: no valid trial (see the table)."
        s = summary(times)
        within = sum(1 for x in times if x <= bound)
        return (
            f"{what}: median {s['p50']:.1f} s, p95 {s['p95']:.1f} s, max {s['max']:.1f} s over "
            f"{len(times)} valid trials of {n}; {within} of {len(times)} within one anti-entropy period "
            f"({bound:.0f} s with its jitter)."
        )

    def yes_no(x: bool | None) -> str:
        return "–" if x is None else "yes" if x else "no"

    def ok(t: dict[str, Any]) -> str:
        return "/".join(str(x).lower() for x in t["rendezvous_ok_during_cut"]) or "–"

    b, st = r["burst"], r["steady"]
    lines = [
        f"{r['services']:,} services bridged from campus A to B ({r['publishers']} python-zeroconf "
        f"publishers, one burst: all listed on B {f(b['burst_to_last_s'])} s after it; kernel drops "
        f"A {b['kernel_drops_A']}, B {b['kernel_drops_B']}); first trial "
        f"{f(r.get('first_trial_after_start_s'))} s after the gateways started; anti-entropy period "
        f"{r['anti_entropy_s']:g} s (the default, ±{JITTER:.0%} jitter); what B's link lists is counted "
        "by avahi-browse on `b-client`.",
        "",
        "**Lost push, listen kept** (the proxy's data on B's listen connections dropped by nftables, "
        "the connections kept open; one new instance registered on A): A exported → listed on B.",
        "",
        "| trial | listen kept | push packets dropped | `rendezvous_ok` during | after "
        "| A exported → listed on B s | full gets / skipped rounds | proxy bytes into B |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]
    listen = r.get("listen_trials", [])
    for i, t in enumerate(listen, 1):
        if "error" in t:
            lines.append(f"| {i} | {t['error']} | | | | | | |")
            continue
        lines.append(
            f"| {i} | {'yes' if t['listen_kept'] else 'NO (reconnected)'} | {t['pushes_dropped_packets']} | "
            f"{ok(t)} | {str(t['rendezvous_ok_after']).lower()} | {f(t['repair_s'])} | "
            f"{t['full_gets']} / {t['skipped_rounds']} | {t['proxy_bytes_in']:,} |"
        )
    valid = [
        t["repair_s"]
        for t in listen
        if "error" not in t and t["listen_kept"] and t["pushes_dropped_packets"] and t["repair_s"] is not None
    ]
    lines += ["", stats(valid, len(listen), "Repair of a lost push, A exported → listed on B"), ""]
    lines += [
        f"**Uplink cut** (every TCP packet between `b-gw` and the REST proxies dropped for "
        f"{r['window_s']:g} s; the new instance registered on A 2 s in): end of the cut → listed on B.",
        "",
        "| trial | push lost | `rendezvous_ok` during cut | cut end → listed on B s | listen reconnected "
        "| cut end → `rendezvous_ok` true s | full gets / skipped rounds "
        "| proxy bytes into B, cut end → listed |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    trials = r["trials"]
    for i, t in enumerate(trials, 1):
        lost = "yes" if t["lost"] else "NO (listed during the cut)"
        if not t["exported_by_A_during_cut"]:
            lost += " (A had not exported it)"
        lines.append(
            f"| {i} | {lost} | {ok(t)} | {f(t['repair_s'])} | "
            f"{yes_no(t.get('listen_reconnected'))} | {f(t.get('rendezvous_ok_again_s'))} | "
            f"{t['full_gets']} / {t['skipped_rounds']} | {t['proxy_bytes_in_heal_to_listed']:,} |"
        )
    times = [
        t["repair_s"]
        for t in trials
        if t["lost"] and t["exported_by_A_during_cut"] and t["repair_s"] is not None
    ]
    lines += ["", stats(times, len(trials), "After an uplink cut, cut end → listed on B")]
    too_big = {json.dumps(t.get("answers_too_big_after")) for t in [*listen, *trials]}
    lines.append(
        f"Steady state before the trials ({st['seconds']:.0f} s): B read "
        f"{st['proxy_in_bytes_per_period']:,.0f} B per anti-entropy period from its REST proxy "
        f"(summaries and listen traffic; {st['proxy_out_bytes_per_period']:,.0f} B out), "
        f"{st['full_gets']} full gets and {st['skipped_rounds']} rounds skipped by the digests, "
        f"`rendezvous_ok` {str(st['rendezvous_ok']).lower()}, `answers_too_big` {st['answers_too_big']}. "
        f"`answers_too_big` after the trials: {', '.join(sorted(too_big))}. B's status at the end: "
        f"{r['B_status']}; B's warnings: {len(r['B_warnings'])}."
    )
    return "\n".join(lines)


def sizes(short: bool) -> dict[str, Any]:
    """run()'s arguments for the full run, or a quick one (200 services, 2 trials, no idle)."""
    if short:
        return {"services": 200, "publishers": 10, "trials": 2, "window": 45.0, "start_after": 60.0,
                "steady": 30.0}  # fmt: skip
    return {}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.repair", description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true", help="a quick run: 200 services, 2 trials, 60 s idle")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--publishers", type=int, default=20)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--window", type=float, default=60.0, help="seconds B is cut off (default 60)")
    p.add_argument("--start-after", type=float, default=900.0, help="first trial this long after start")
    p.add_argument("--lock", help="flock this file around start-up and each trial (the testbed lock)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    args: dict[str, Any] = {"services": a.services, "publishers": a.publishers, "trials": a.trials,
                            "window": a.window, "start_after": a.start_after, "lock": a.lock}  # fmt: skip
    r = run(**{**args, **sizes(a.short)})
    print(markdown(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2, default=str)


if __name__ == "__main__":
    main()
