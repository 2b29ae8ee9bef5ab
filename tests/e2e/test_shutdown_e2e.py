"""A clean stop (SIGTERM) under load, on the namespace testbed.

The issue's requirement: "A clean stop (SIGTERM) sends mDNS goodbyes and DHT
tombstones for everything it published" -- here with 40 services, not one.

Both gateways run without elections (bridging goes through the outside
rendezvous, deterministically) and with a 600 s TTL, so nothing can vanish by
expiry during the test: every withdrawal seen on campus B must come from a
goodbye (B's gateway stops) or from a tombstone (A's gateway stops).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from support.testbed import Proc, Testbed

from z2z.core.wire import envelope as protocol

pytestmark = pytest.mark.netns

T = "_ipp._tcp"
N = 40
NAMES = [f"Load Printer {i:02d}" for i in range(N)]
# Far above the test's length: no import may expire, no export needs a refresh.
SLOW = ("--ttl", "600", "--refresh", "300", "--no-election")
WAIT = 60.0  # generous: the machine may be shared; measured bounds are asserted separately
GOODBYE_BOUND = 5.0  # signal -> last goodbye seen on B, when B's gateway stops
TOMBSTONE_BOUND = 10.0  # signal -> last removal seen on B, when A's gateway stops
EXIT_BOUND = 10.0  # SIGTERM -> exit: Gateway.stop waits at most ~3 s per phase


def gateway(tb: Testbed, host: str, site: str, rendezvous: str) -> Proc:
    proc = tb.spawn(
        host,
        [
            sys.executable,
            "-m",
            "z2z",
            "run",
            "--public",
            "--site",
            site,
            "--interface",
            "lan0",
            "--rendezvous",
            rendezvous,
            "--type",
            T,
            "--state-dir",
            str(tb.workdir / f"state-{host}"),
            "--log-level",
            "debug",
            *SLOW,
        ],
        name=f"{host}-z2z",
    )
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def wait_all(watch: Proc, event: str, after: int, timeout: float = WAIT) -> dict[str, dict]:
    """Wait until `watch` reported `event` for every one of NAMES (events from index `after`)."""
    deadline = time.monotonic() + timeout
    while True:
        seen: dict[str, dict] = {}
        for e in watch.events()[after:]:
            if e.get("event") == event and e.get("instance") in NAMES:
                seen.setdefault(e["instance"], e)
        if len(seen) == N:
            return seen
        if time.monotonic() > deadline or not watch.alive:
            missing = sorted(set(NAMES) - set(seen))
            raise AssertionError(
                f"{watch.name}: {event!r} seen for {len(seen)}/{N} after {timeout}s; "
                f"missing {missing}\n{watch.log_tail()}"
            )
        time.sleep(0.05)


def sigterm(proc: Proc) -> tuple[float, float]:
    """SIGTERM `proc`; wait for exit code 0.  Returns (wall time of the signal, seconds to exit)."""
    t_sig = time.time()
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{proc.name} did not exit after SIGTERM: {exc}\n{proc.log_tail()}") from exc
    took = time.monotonic() - t0
    assert code == 0, f"{proc.name} exited with {code}\n{proc.log_tail()}"
    return t_sig, took


def stop_and_time_removals(watch: Proc, gw: Proc, what: str, bound: float) -> None:
    """SIGTERM `gw`; every one of NAMES must go "down" on B's link within `bound` seconds."""
    mark = watch.mark()
    t_sig, took = sigterm(gw)
    downs = wait_all(watch, "down", mark)
    last = max(e["t"] for e in downs.values()) - t_sig
    first = min(e["t"] for e in downs.values()) - t_sig
    print(f"SIGTERM {gw.name}: exit {took:.2f} s; {what}s seen on B {first:.2f} .. {last:.2f} s")
    assert took < EXIT_BOUND, f"{gw.name} took {took:.2f} s to stop\n{gw.log_tail()}"
    assert last < bound, f"last {what} {last:.2f} s after SIGTERM (TTL is 600 s)"


def test_sigterm_withdraws_everything_under_load(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    watch.wait_event("browsing", timeout=15)
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0])
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])

    # 40 instances on campus A, from one printer process
    printer = tb.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--control",
        "--no-probe",
        "--type",
        T,
        "--address",
        tb.node("a-printer").ipv4,
        "--txt",
        "rp=ipp/print",
        stdin=True,
    )
    printer.wait_event("ready", timeout=15)
    t_reg0 = time.time()
    for name in NAMES:
        printer.send(f"register {name}")
    deadline = time.monotonic() + WAIT
    while len({e["name"] for e in printer.events() if e.get("event") == "registered"}) < N:
        assert time.monotonic() < deadline and printer.alive, printer.log_tail()
        time.sleep(0.05)
    assert not [e for e in printer.events() if e.get("event") == "error"], printer.log_tail()
    ups = wait_all(watch, "up", 0)
    print(f"\n{N} registered on A -> all up on B: {max(e['t'] for e in ups.values()) - t_reg0:.2f} s")
    assert all(e["addresses"] == ["10.77.1.10"] for e in ups.values())

    # 1. B's gateway stops: its link must hear a goodbye for every import at once
    stop_and_time_removals(watch, gw_b, "goodbye", GOODBYE_BOUND)

    # B's gateway comes back (same state dir) and imports all 40 again
    mark = watch.mark()
    t_restart = time.time()
    gw_b2 = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])
    ups = wait_all(watch, "up", mark)
    print(f"b-gw restarted -> all up on B again: {max(e['t'] for e in ups.values()) - t_restart:.2f} s")

    # 2. A's gateway stops while A's printer still announces: only tombstones can
    # take the 40 services off campus B before their 600 s TTL
    stop_and_time_removals(watch, gw_a, "removal", TOMBSTONE_BOUND)
    assert printer.alive, printer.log_tail()
    assert "could not deliver every tombstone" not in gw_a.stderr(), gw_a.log_tail()

    # the rendezvous holds a tombstone as the newest version of each of A's 40 exports
    newest: dict[str, protocol.Envelope] = {}
    for env in tb.dht_values(dht.proxy_urls[1]):
        if env.site == "campus-a" and (
            env.service.instance not in newest or env.seq > newest[env.service.instance].seq
        ):
            newest[env.service.instance] = env
    assert sorted(newest) == NAMES
    live = sorted(name for name, env in newest.items() if not env.gone)
    assert not live, f"newest version in the DHT is not a tombstone for {live}"

    assert sigterm(gw_b2)[0]
    for proc in (gw_a, gw_b, gw_b2):
        assert "Traceback" not in proc.stderr(), proc.log_tail(80)
    printer.kill()  # its 40 goodbyes would take ~15 s and prove nothing here
