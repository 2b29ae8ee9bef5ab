"""`make pi-check`'s testbed part: a gateway running from the arm64 root on the netns testbed.

Campus A's gateway is ``chroot /var/cache/z2z-arm64 /opt/z2z/bin/z2z run`` inside
the ``a-gw`` namespace, so every instruction of it (python3, zeroconf's Cython,
opendht's C++ for the leaders' DHT) runs as arm64 under qemu-aarch64-static.
Campus B's gateway is the native one from .venv.  Real dhtnodes are the
rendezvous, real avahi-daemons on the clients judge what each link shows.

1. A printer on campus A appears on campus B (avahi-browse on b-client);
2. a printer on campus B appears on campus A (avahi-browse on a-client), i.e.
   the arm64 gateway imports and publishes too;
3. 100 services on campus A, all exported by the arm64 gateway and visible on B:
   the arm64 gateway's VmRSS/VmHWM, idle and with the 100.

Run by ``make pi-check PI_ARGS=--testbed``, which holds the shared netns lock meanwhile.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from roots import CheckFailed, mounted, say
from support.avahi_helpers import browse
from support.testbed import Proc, Testbed

T = "_ipp._tcp"
SERVICES = 100
PUBLISHERS = 10


def memory(pid: int) -> str:
    """VmRSS and VmHWM of `pid` in MiB (for the arm64 gateway: qemu-aarch64 running python3)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    return f"VmRSS {fields['VmRSS']:.1f} MiB, VmHWM {fields['VmHWM']:.1f} MiB"


def wait(what: str, probe: object, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if probe():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.5)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for: {what}")


def gateway(
    tb: Testbed, host: str, site: str, proxy: str, argv0: list[str], timeout: float, *extra: str
) -> Proc:
    state = "/var/lib/z2z-pi-check" if argv0[0] == "chroot" else str(tb.workdir / f"state-{host}")
    secret = tb.workdir / "network.secret"  # one private network; the workdir is bound into the root
    avahi = tb.avahis.get(host)
    proc = tb.spawn(
        host,
        [*argv0, "run", "--site", site, "--interface", "lan0", "--rendezvous", proxy,
         "--type", T, "--state-dir", state, "--network-secret", str(secret), "--log-level", "info", *extra],
        name=f"{host}-z2z",
        env=avahi.env if avahi else None,
    )  # fmt: skip
    proc.wait_line(r"bridging _ipp._tcp", timeout=timeout, stream="stderr")
    return proc


def printer(tb: Testbed, host: str, name: str) -> Proc:
    proc = tb.spawn_tool(
        host, "mdns_printer", "--name", name, "--type", T, "--port", "631", "--host", "printer",
        "--address", tb.node(host).ipv4, "--txt", "rp=ipp/print", name=f"{host}-{name.replace(' ', '_')}",
    )  # fmt: skip
    proc.wait_event("registered", timeout=30)
    return proc


def seen(tb: Testbed, client: str, instance: str, host_part: str) -> bool:
    return any(
        e.get("instance") == instance and host_part in e.get("host", "") and e.get("port") == 631
        for e in browse(tb, client)
    )


def run_on_testbed(root: Path, results: list[tuple[str, str]]) -> None:
    def ok(what: str, figure: str) -> None:
        results.append((what, figure))
        say(f"   PASS {what}: {figure}")

    arm64 = ["chroot", str(root), "/opt/z2z/bin/z2z"]
    native = [sys.executable, "-m", "z2z"]
    # A fresh state dir each run: the native gateway on campus B gets a new site key in
    # every testbed, and the trust learned on a previous run would refuse it (SITE KEY
    # CHANGED), as trust on first use must.
    shutil.rmtree(root / "var/lib/z2z-pi-check", ignore_errors=True)
    (root / "var/lib/z2z-pi-check").mkdir(parents=True)
    with mounted(root), Testbed(hosts={"a-client": ("a", 20), "b-printer": ("b", 10)}) as tb:
        dht = tb.start_dht()
        tb.start_avahis(["a-gw", "a-client", "b-client"])
        # qemu-user (7.2, bookworm) does not emulate setsockopt(IP_MULTICAST_IF), so
        # python-zeroconf cannot open its sockets under emulation ("Protocol not
        # available"); a real arm64 kernel has no such gap.  The arm64 gateway speaks
        # mDNS through avahi-daemon instead (the Pi's usual set-up): a native daemon
        # in a-gw's namespace, whose private bus socket is bound into the root.
        inside = root / str(tb.workdir).lstrip("/")
        inside.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(tb.workdir), str(inside)], check=True)
        try:
            run_both_ways(tb, root, dht.proxy_url, arm64, native, ok)
        except CheckFailed:
            say(tb.dump_logs())  # the workdir goes with the testbed
            raise
        finally:
            subprocess.run(["umount", "-l", str(inside)], check=False)


def run_both_ways(
    tb: Testbed, root: Path, proxy: str, arm64: list[str], native: list[str], ok: Callable[[str, str], None]
) -> None:
    dht_url = proxy
    subprocess.run([*native, "keygen", "--out", str(tb.workdir / "network.secret")], check=True)
    (tb.workdir / "network.secret").chmod(0o644)  # both gateways run as root here; the file is test-only
    t0 = time.monotonic()
    # --no-election: the leaders' DHT (an embedded OpenDHT node) stays out of the emulator
    gw_a = gateway(tb, "a-gw", "campus-a", dht_url, arm64, 180, "--mdns", "avahi", "--no-election")
    started = time.monotonic() - t0
    maps = Path(f"/proc/{gw_a.pid}/maps").read_text()
    if "qemu" not in Path(f"/proc/{gw_a.pid}/exe").resolve().name and "aarch64" not in maps:
        raise CheckFailed("campus A's gateway is not running from the arm64 root")
    ok("arm64 gateway on a-gw bridging", f"{started:.1f} s after start (native: about 1 s)")
    gw_b = gateway(tb, "b-gw", "campus-b", dht_url, native, 60)
    time.sleep(3)
    idle = memory(gw_a.pid)

    printer(tb, "a-printer", "Campus Printer")
    took = wait(
        "A's printer on campus B",
        lambda: seen(tb, "b-client", "Campus Printer", "campus-a"),
        60,
    )
    ok(
        "A (arm64) → B: avahi-browse on b-client",
        f"'Campus Printer' (host *-campus-a-z2z) resolved within {took:.1f} s",
    )
    printer(tb, "b-printer", "Back Printer")
    took = wait("B's printer on campus A", lambda: seen(tb, "a-client", "Back Printer", "campus-b"), 90)
    ok("B → A (arm64 imports, publishes): avahi-browse on a-client", f"resolved within {took:.1f} s")

    per = SERVICES // PUBLISHERS
    pubs = []
    for k in range(PUBLISHERS):
        pr = tb.spawn_tool(
            "a-printer", "mdns_printer", "--control", "--no-probe", "--type", T, "--host", f"bulk{k}",
            "--address", tb.node("a-printer").ipv4, "--txt", "txtvers=1", name=f"a-bulk-{k}", stdin=True,
        )  # fmt: skip
        pubs.append(pr)
    for k, pr in enumerate(pubs):
        pr.wait_event("ready", timeout=30)
        for i in range(per):
            pr.send(f"register Bulk {k * per + i:03d}")
    t0 = time.monotonic()

    def bulk_on_b() -> bool:
        names = {e["instance"] for e in browse(tb, "b-client", resolve=False) if e.get("event") == "+"}
        return sum(1 for n in names if n.startswith("Bulk ")) >= SERVICES

    took = wait(f"{SERVICES} services of A visible on B", bulk_on_b, 300)
    exported = sum(1 for line in gw_a.stderr().splitlines() if "export new: 'Bulk" in line)
    if exported < SERVICES:
        raise CheckFailed(f"the arm64 gateway exported {exported} of {SERVICES}")
    time.sleep(10)
    busy = memory(gw_a.pid)
    ok(
        f"{SERVICES} services exported by the arm64 gateway, all on B",
        f"in {took:.1f} s; arm64 gateway idle: {idle}; with {SERVICES + 1} exports and 1 import: {busy}; "
        f"native B importing them: {memory(gw_b.pid)}",
    )
    for pr in pubs:
        pr.kill()
