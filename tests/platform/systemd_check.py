"""`make systemd-check`: contrib/z2z.service under a real systemd (PID 1 in systemd-nspawn).

A debootstrapped Debian 12 root (cached in /var/cache/z2z-systemd) gets z2z the way
docs/raspberry-pi.md installs it, with avahi-daemon as on a Pi, and two dhtnodes on
the container's loopback as the rendezvous.  systemd-nspawn boots it with a private
network (a veth, host side up, no address).  Then, against the running systemd:

- ``systemctl start z2z`` stays ``activating`` until READY=1, then ``active (running)``;
- ``systemctl status`` shows the status line;
- a printer published with avahi-publish is exported (journal), and can be read back
  only with the network secret that ``z2z invite`` made before the first start
  and the unit gets through its ``LoadCredential=``; the journal names the network;
- another dynamic user cannot read that secret;
- ``kill -9`` of the main process: restarted (``Restart=on-failure``);
- ``kill -STOP``: killed by the watchdog (``WatchdogSec=30``) and restarted;
- the state directory keeps the node id across both restarts, owned by the dynamic user;
- the journal has one line per event and no traceback;
- ``systemctl reload`` re-reads the config (same main PID, "configuration reloaded");
- ``systemctl disable --now`` stops cleanly (tombstones out), and the docs' uninstall
  leaves nothing behind.

Needs root, debootstrap and systemd-nspawn (Debian: debootstrap systemd-container).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from roots import (
    DOC_PACKAGES,
    CheckFailed,
    Timings,
    chroot,
    debootstrap,
    forbid_service_starts,
    install_z2z,
    mounted,
    need_root_and_tools,
    run,
    say,
    trust_host_cas,
)

ROOT = Path("/var/cache/z2z-systemd")
MACHINE = "z2zsd"  # host side of the veth: ve-z2zsd
NETWORK = "z2z-systemd-check"
PROXY = "http://127.0.0.1:8300"
TYPE = "_ipp._tcp"
PRINTER = "Check Printer"

CONFIG = f"""\
site = "pi-check"
network = "{NETWORK}"
interface = ["host0"]
rendezvous = "{PROXY}"
type = ["{TYPE}"]
log-level = "info"
"""

# Test harness inside the container, not part of the install: an address on the
# veth and two dhtnodes on loopback (Debian's own dhtnode.service is masked: it
# would bootstrap into the public network).
NET_UNIT = """\
[Unit]
Description=z2z systemd-check: address on host0
Before=z2z.service avahi-daemon.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link set host0 up
ExecStart=/sbin/ip addr add 10.99.0.2/24 dev host0
[Install]
WantedBy=multi-user.target
"""
DHT_UNIT = """\
[Unit]
Description=z2z systemd-check: two dhtnodes on loopback (the rendezvous)
[Service]
ExecStart=/bin/sh -c 'dhtnode -s -v -l /var/log/dht0.log -p 4300 --proxyserver 8300 & \
exec dhtnode -s -v -l /var/log/dht1.log -p 4301 -b 127.0.0.1:4300'
[Install]
WantedBy=multi-user.target
"""


class Container:
    """systemd-nspawn --boot of ROOT; commands run inside through nsenter (no machined here)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = open("/tmp/z2z-systemd-check-console.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(root),
                "--boot",
                "--register=no",  # no systemd-machined on this host
                "--keep-unit",  # nor a host systemd to make a scope
                f"--machine={MACHINE}",
                "--network-veth",
                "--console=pipe",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.init_pid = 0

    def boot(self, timeout: float = 120) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise CheckFailed(f"systemd-nspawn exited {self.proc.returncode} (see {self.log.name})")
            children = run(["pgrep", "-P", str(self.proc.pid)], check=False).split()
            if children:
                self.init_pid = int(children[0])
                state = self.sh("systemctl is-system-running", check=False).strip()
                if state in {"running", "degraded"}:
                    return time.monotonic() - t0
            time.sleep(0.5)
        raise CheckFailed("the container's systemd did not finish booting")

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> str:
        return run(
            ["nsenter", "-t", str(self.init_pid), "-a", "/bin/sh", "-c", script], check=check, timeout=timeout
        )

    def show(self, *props: str) -> dict[str, str]:
        out = self.sh("systemctl show z2z -p " + " -p ".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self) -> None:
        if self.init_pid and self.proc.poll() is None:
            self.sh("systemctl poweroff", check=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_for(what: str, probe: Callable[[], bool], timeout: float, step: float = 0.2) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if probe():
            return time.monotonic() - t0
        time.sleep(step)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for: {what}")


def prepare(t: Timings) -> str:
    with t.step("debootstrap (cached)"):
        made = debootstrap(ROOT, include=["systemd", "systemd-sysv", "dbus", "ca-certificates"])
        say(f"   {'made' if made else 'reused'} {ROOT}")
    with mounted(ROOT):
        forbid_service_starts(ROOT)
        with t.step("apt-get install (docs/raspberry-pi.md step 2, plus dhtnode iproute2 for the harness)"):
            pkgs = " ".join([*DOC_PACKAGES, "dhtnode", "iproute2", "procps"])
            chroot(
                ROOT, f"dpkg -s {pkgs} >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q {pkgs})"
            )
        trust_host_cas(ROOT)
        with t.step("install z2z (clone, venv, pip install)"):
            version = install_z2z(ROOT)
            say(f"   {version}")
        chroot(
            ROOT,
            "install -d /etc/z2z\n"
            "install -m 644 /opt/z2z/src/contrib/z2z.service /etc/systemd/system/z2z.service\n"
            "systemctl mask dhtnode.service\n"
            "rm -rf /var/lib/private/z2z /var/lib/z2z /etc/systemd/system/z2z.service.d\n"
            "rm -f /etc/systemd/system/multi-user.target.wants/z2z.service\n",  # a failed run left it enabled
        )
    (ROOT / "usr/sbin/policy-rc.d").unlink()
    (ROOT / "etc/hostname").write_text(MACHINE + "\n")
    (ROOT / "etc/z2z/z2z.toml").write_text(CONFIG)
    with mounted(ROOT):
        # docs/raspberry-pi.md 3b, on the first Pi: the secret, before the first start
        invite = chroot(ROOT, "z2z invite 2>&1")
    say(f"   z2z invite: {invite.strip().splitlines()[0]}")
    for name, text in {"z2z-check-net.service": NET_UNIT, "z2z-check-dht.service": DHT_UNIT}.items():
        (ROOT / "etc/systemd/system" / name).write_text(text)
        wants = ROOT / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(exist_ok=True)
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")
    return version


def checks(c: Container, t: Timings, results: list[tuple[str, str]]) -> None:
    def ok(what: str, figure: str) -> None:
        results.append((what, figure))
        say(f"   PASS {what}: {figure}")

    run(["ip", "link", "set", f"ve-{MACHINE}", "up"])
    probe = f"python3 -c \"import urllib.request as u; u.urlopen('{PROXY}/')\" && echo up"
    wait_for("the dhtnode proxy", lambda: c.sh(probe, check=False).strip() == "up", 30)

    cursor_cmd = "journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'"
    first_cursor = c.sh(cursor_cmd).strip()

    def journal(since_cursor: str = "") -> str:
        """z2z's journal lines of this run (the root's journal keeps earlier runs)."""
        return c.sh(f"journalctl -u z2z --no-pager -o cat --after-cursor='{since_cursor or first_cursor}'")

    with t.step("systemctl start z2z: activating until READY=1"):
        t0 = time.monotonic()
        c.sh("systemctl enable z2z && systemctl start --no-block z2z")  # docs: systemctl enable --now z2z
        states: list[str] = []

        def active() -> bool:
            s = c.show("ActiveState", "SubState")
            state = f"{s['ActiveState']}/{s['SubState']}"
            if not states or states[-1] != state:
                states.append(state)
            if s["ActiveState"] == "failed":
                raise CheckFailed(f"z2z failed to start: {c.sh('journalctl -u z2z -n 20 --no-pager -o cat')}")
            return state == "active/running"

        wait_for("z2z active", active, 90, step=0.05)
        took = time.monotonic() - t0
        if not states or not states[0].startswith("activating"):
            raise CheckFailed(f"never seen activating before active: {states}")
        c.sh("systemctl start z2z")  # a blocking start returns at once now
        ok("start: activating → active (running) after READY=1", f"{' → '.join(states)} in {took:.1f} s")

    link = next((x for x in journal().splitlines() if "link up" in x or "through avahi-daemon" in x), "?")
    probe = c.sh(
        "systemd-run --wait --pipe --quiet -p DynamicUser=yes /opt/z2z/bin/python -c "
        "\"from z2z.adapters.link.avahi import probe_avahi; print(probe_avahi(['host0']))\"",
        check=False,
    ).strip()
    ok("link backend chosen by mdns = auto", f"{link} (probe_avahi as a dynamic user: {probe})")
    status = c.sh("systemctl status z2z --no-pager", check=False)
    line = next((s.strip() for s in status.splitlines() if s.strip().startswith("Status:")), "")
    if not re.match(r'Status: "stage \d, \w+ via ', line):
        raise CheckFailed(f"no status line in systemctl status:\n{status}")
    ok("status line in systemctl status", line)

    with t.step("a printer on the link is exported, sealed with the credential's secret"):
        c.sh(f"systemd-run --unit=z2z-check-printer avahi-publish -s '{PRINTER}' {TYPE} 631 rp=ipp/print")
        exported = f"export new: '{PRINTER}'"
        wait_for("export of the printer in the journal", lambda: exported in journal(), 60)
        browse = f"z2z browse {TYPE} --rendezvous {PROXY} --network {NETWORK} --json"

        def listed() -> bool:
            found = c.sh(f"{browse} --network-secret /var/lib/z2z/network.secret")
            return PRINTER in {e.get("instance") for e in json.loads(found)}

        wait_for("z2z browse with the secret to list the printer", listed, 30)
        without = c.sh(f"{browse} --public", check=False)  # no secret: what an outsider sees
        if PRINTER in without:
            raise CheckFailed("the printer is readable without the network secret")
        ok("secret through LoadCredential=", "browse with the secret lists the printer, without it does not")
        pid = c.show("MainPID")["MainPID"]
        rss = c.sh(f"sed -n 's/^VmRSS: *//p' /proc/{pid}/status").strip()
        status = c.show("StatusText")["StatusText"]
        ok("memory and status with one export", f"VmRSS {rss}; Status: {status}")
        ticks = "awk '{print $14 + $15}' /proc/" + pid + "/stat"
        cpu0, t0 = int(c.sh(ticks)), time.monotonic()
        time.sleep(20)
        cpu1, t1 = int(c.sh(ticks)), time.monotonic()
        hz = int(c.sh("getconf CLK_TCK"))
        ok(
            "CPU while bridging one service",
            f"{100 * (cpu1 - cpu0) / hz / (t1 - t0):.1f} % of one core over 20 s",
        )
        named = next((x for x in journal().splitlines() if "private network" in x), "")
        if NETWORK not in named:
            raise CheckFailed(f"the journal does not name the private network: {named!r}")
        ok("the unit's first lines name the private network", named)
        denied = c.sh(
            "systemd-run --wait --pipe --quiet -p DynamicUser=yes cat /var/lib/private/z2z/network.secret"
            " 2>&1; echo exit=$?",
            check=False,
        )
        if "exit=0" in denied:
            raise CheckFailed(f"another dynamic user could read the secret: {denied}")
        ok("the secret in the state dir is closed to other users", denied.strip().splitlines()[0])

    def node_and_owner() -> tuple[str, str]:
        state = json.loads(c.sh("cat /var/lib/private/z2z/state.json"))
        owner = c.sh("stat -c %U:%u /var/lib/private/z2z").strip()
        return str(state["node"]), owner

    node0, owner0 = node_and_owner()
    s = c.show("MainPID", "NRestarts")
    uid = c.sh(f"stat -c %u /proc/{s['MainPID']}").strip()
    link = c.sh("readlink /var/lib/z2z").strip()
    if not (61184 <= int(uid) <= 65519) or not owner0.endswith(f":{uid}") or link != "private/z2z":
        raise CheckFailed(f"not a DynamicUser state dir: uid {uid}, owner {owner0}, /var/lib/z2z -> {link}")
    ok(
        "DynamicUser with StateDirectory",
        f"main process and state dir: dynamic uid {uid}; /var/lib/z2z -> {link}; node {node0}",
    )

    def restarted_after(pid0: str, n0: str) -> Callable[[], bool]:
        def probe() -> bool:
            s = c.show("MainPID", "NRestarts", "ActiveState", "SubState")
            return (
                s["MainPID"] not in {pid0, "0"}
                and int(s["NRestarts"]) == int(n0) + 1
                and (s["ActiveState"], s["SubState"]) == ("active", "running")
            )

        return probe

    with t.step("kill -9 → Restart=on-failure"):
        s = c.show("MainPID", "NRestarts")
        c.sh(f"kill -9 {s['MainPID']}")
        took = wait_for("restart after kill -9", restarted_after(s["MainPID"], s["NRestarts"]), 90)
        node, _ = node_and_owner()
        if node != node0:
            raise CheckFailed(f"node id changed across the restart: {node0} -> {node}")
        ok(
            "kill -9 → restarted, same node id",
            f"active again {took:.1f} s later (RestartSec=5), node {node}",
        )

    with t.step("kill -STOP → watchdog kill and restart"):
        s = c.show("MainPID", "NRestarts")
        cursor = c.sh(cursor_cmd).strip()
        c.sh(f"kill -STOP {s['MainPID']}")
        took = wait_for("watchdog restart", restarted_after(s["MainPID"], s["NRestarts"]), 120, step=0.5)
        sys_log = c.sh(
            f"journalctl --no-pager -o cat --after-cursor='{cursor}' | grep -i watchdog", check=False
        )
        if "Watchdog timeout" not in sys_log:
            raise CheckFailed(f"no watchdog timeout in the journal: {sys_log}")
        node, _ = node_and_owner()
        if node != node0:
            raise CheckFailed(f"node id changed across the watchdog restart: {node0} -> {node}")
        ok(
            "SIGSTOP → watchdog → restarted, same node id",
            f"active again {took:.1f} s later; {sys_log.splitlines()[0]}",
        )

    with t.step("systemctl reload re-reads the config"):
        s = c.show("MainPID", "NRestarts")
        (ROOT / "etc/z2z/z2z.toml").write_text(CONFIG.replace('log-level = "info"', 'log-level = "debug"')
                                               + 'export-deny = ["*private*", "Other *"]\n')  # fmt: skip
        cursor = c.sh(cursor_cmd).strip()
        c.sh("systemctl reload z2z")
        wait_for("configuration reloaded", lambda: "configuration reloaded" in journal(cursor), 30)
        after = c.show("MainPID", "NRestarts", "ActiveState")
        if (after["MainPID"], after["NRestarts"], after["ActiveState"]) != (
            s["MainPID"],
            s["NRestarts"],
            "active",
        ):
            raise CheckFailed(f"reload restarted the service: {s} -> {after}")
        line = next(x for x in journal(cursor).splitlines() if "configuration reloaded" in x)
        ok("systemctl reload (SIGHUP)", f"same main PID {s['MainPID']}; journal: {line}")

    whole = journal()
    lines = whole.splitlines()
    if any("Traceback" in x for x in lines):
        raise CheckFailed("a traceback in the journal:\n" + whole)
    events = [x for x in lines if re.search(r"export|leader|bridging|reloaded|importing", x)]
    if len(events) < 3:
        raise CheckFailed("expected event lines (leader, bridging, export) in the journal:\n" + whole)
    ok("journal: one line per event, no traceback", f"{len(lines)} lines from z2z, e.g. {events[:3]}")

    with t.step("uninstall as the docs say (section 8)"):
        enabled = c.sh("systemctl is-enabled z2z", check=False).strip()
        c.sh("systemctl disable --now z2z")
        s = c.show("ActiveState", "Result")
        if (enabled, s["ActiveState"], s["Result"]) != ("enabled", "inactive", "success"):
            raise CheckFailed(f"unclean stop: was {enabled}, now {s}")
        browse = f"z2z browse {TYPE} --rendezvous {PROXY} --network {NETWORK} --json"
        left = json.loads(c.sh(f"{browse} --network-secret /var/lib/z2z/network.secret"))
        if left:
            raise CheckFailed(f"still live in the rendezvous after a clean stop: {left}")
        ok(
            "systemctl disable --now z2z",
            "was enabled; inactive, Result=success; its tombstone hides the printer",
        )
        c.sh(
            "rm -rf /etc/systemd/system/z2z.service /etc/systemd/system/z2z.service.d\n"
            "systemctl daemon-reload\n"
            "rm -rf /opt/z2z /usr/local/bin/z2z /etc/z2z\n"
            "rm -rf /var/lib/private/z2z /var/lib/z2z"
        )
        gone = c.sh("systemctl status z2z --no-pager 2>&1", check=False).strip()
        leftovers = c.sh("ls -d /opt/z2z /etc/z2z /var/lib/z2z /var/lib/private/z2z 2>/dev/null", check=False)
        if "could not be found" not in gone or leftovers.strip():
            raise CheckFailed(f"uninstall left something: {gone!r} {leftovers!r}")
        ok("uninstall (docs section 8)", gone.splitlines()[0])


def main() -> int:
    need_root_and_tools("debootstrap", "systemd-nspawn", packages="debootstrap systemd-container")
    t = Timings()
    results: list[tuple[str, str]] = []
    version = prepare(t)
    container = Container(ROOT)
    try:
        with t.step("boot systemd as PID 1 (systemd-nspawn --boot)"):
            took = container.boot()
            say(f"   {container.sh('systemctl --version | head -1').strip()}: running after {took:.1f} s")
        checks(container, t, results)
    except CheckFailed as exc:
        say(f"FAIL: {exc}")
        say(container.sh("journalctl -u z2z --no-pager -n 40 -o short-monotonic", check=False))
        return 1
    finally:
        container.poweroff()
    say(f"\nsystemd-check passed ({version}):")
    for what, figure in results:
        say(f"| {what} | {figure} |")
    say("\ntimings:\n" + t.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
