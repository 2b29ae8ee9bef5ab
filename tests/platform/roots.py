"""Debian roots for the platform checks (`make systemd-check`, `make pi-check`).

Each check runs z2z in a Debian 12 root made with debootstrap and cached outside
the repository (``/var/cache/z2z-*``), installed the way docs/raspberry-pi.md tells
a Pi user.  Building a root once takes a minute or two; later runs reuse it and only
reinstall z2z from the current commit.  Root only.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIRROR = os.environ.get("Z2Z_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# docs/raspberry-pi.md, step 2: what a Pi user installs from Debian.
DOC_PACKAGES = [
    "git",
    "python3-venv",
    "python3-pip",
    "avahi-daemon",
    "avahi-utils",
    "python3-avahi",
    "python3-dbus",
    "python3-gi",
]


class CheckFailed(Exception):
    """A platform check did not hold: the message says which and what was seen."""


def say(msg: str) -> None:
    print(msg, flush=True)


def need_root_and_tools(*tools: str, packages: str) -> None:
    """One line and exit 1 when something the check needs is missing."""
    if os.geteuid() != 0:
        sys.exit(f"{Path(sys.argv[0]).name}: needs root (debootstrap, chroot, mounts)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"{Path(sys.argv[0]).name}: needs {', '.join(missing)}: apt-get install {packages}")


def run(argv: Sequence[str], *, timeout: float = 600, check: bool = True, **kw: object) -> str:
    """Run argv, return its stdout; on failure raise CheckFailed with the output's tail."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise CheckFailed(f"{shlex.join(argv)} exited {proc.returncode}:\n{tail}")
    return str(proc.stdout)


class Timings:
    """Wall-clock seconds of each named step, printed at the end for the docs."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        say(f"== {name}")
        t0 = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - t0
            self.steps.append((name, took))
            say(f"   {name}: {took:.1f} s")

    def table(self) -> str:
        return "\n".join(f"| {name} | {took:.1f} s |" for name, took in self.steps)


def debootstrap(root: Path, *, arch: str | None = None, include: Sequence[str] = ()) -> bool:
    """Make a minimal bookworm root at `root` unless one is there; True if made now.

    For a foreign architecture (arm64 on amd64) the second stage runs under
    qemu-user-static through binfmt_misc (see `enable_binfmt`).
    """
    marker = root / ".z2z-debootstrap-done"
    if marker.exists():
        return False
    if root.exists():
        shutil.rmtree(root)  # a half-made root from an interrupted run
    argv = ["debootstrap", "--variant=minbase"]
    if arch:
        argv.append(f"--arch={arch}")
    if include:
        argv.append("--include=" + ",".join(include))
    run([*argv, "bookworm", str(root), MIRROR], timeout=1800)
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return True


def enable_binfmt() -> None:
    """Mount binfmt_misc if needed and check the qemu-aarch64 handler (F flag: works in chroots)."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    handler = binfmt / "qemu-aarch64"
    if not handler.exists() or "enabled" not in handler.read_text():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    text = handler.read_text()
    if "enabled" not in text or "F" not in text.split("flags:")[1].split("\n")[0]:
        raise CheckFailed(f"binfmt_misc qemu-aarch64 handler not usable in a chroot:\n{text}")


@contextlib.contextmanager
def mounted(root: Path, binds: Sequence[tuple[Path, str]] = ()) -> Iterator[None]:
    """The root bound onto itself, /proc, /sys, /dev (+/dev/pts), a fresh /run, read-only binds."""
    done: list[Path] = []

    def mount(argv: list[str], target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        run([*argv, str(target)])
        done.append(target)

    try:
        # The root a mount point of its own: `ip netns exec` in a chroot runs
        # `mount --make-rslave /`, which fails on a plain directory.
        mount(["mount", "--bind", str(root)], root)
        mount(["mount", "-t", "proc", "proc"], root / "proc")
        mount(["mount", "-t", "sysfs", "sysfs"], root / "sys")
        mount(["mount", "--bind", "/dev"], root / "dev")
        mount(["mount", "--bind", "/dev/pts"], root / "dev/pts")
        mount(["mount", "-t", "tmpfs", "tmpfs"], root / "run")
        for source, inside in binds:
            target = root / inside.lstrip("/")
            mount(["mount", "--bind", str(source)], target)
            run(["mount", "-o", "remount,bind,ro", str(target)])
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def chroot(root: Path, script: str, *, timeout: float = 1800, check: bool = True) -> str:
    """Run a shell script in the root (mounted by `mounted`), as root, no service starts."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    return run(["chroot", str(root), "/bin/sh", "-ec", script], timeout=timeout, check=check, env=env)


def forbid_service_starts(root: Path) -> None:
    """A policy-rc.d that says no: apt in the root must not start daemons on this machine."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# z2z platform checks: no service starts during installs\nexit 101\n")
    policy.chmod(0o755)


def trust_host_cas(root: Path) -> None:
    """The host's local CAs (/usr/local/share/ca-certificates) into the root, for pip.

    Where the way out goes through a TLS-inspecting proxy (as on the machine these
    checks were written on), pip in a fresh root fails with CERTIFICATE_VERIFY_FAILED
    until the root trusts the same local CAs as the host.  Needs ca-certificates in
    the root; a host without local CAs changes nothing.
    """
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not cas:
        return
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for ca in cas:
        shutil.copy2(ca, target / ca.name)
    chroot(root, "update-ca-certificates >/dev/null")


def install_z2z(root: Path) -> str:
    """docs/raspberry-pi.md step 2, with this checkout's HEAD as the clone; returns `z2z --version`.

    The clone is made from the host (the worktree's git directory is not visible in
    the root); the rest runs in the root exactly as the docs say.  A second run is
    the docs' upgrade (`pip install --upgrade`).
    """
    src = root / "opt/z2z/src"
    if src.exists():
        shutil.rmtree(src)
    run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(src)])
    chroot(
        root,
        "test -x /opt/z2z/bin/python3 || python3 -m venv --system-site-packages /opt/z2z\n"
        "/opt/z2z/bin/pip install --quiet --upgrade /opt/z2z/src\n"
        "ln -sf /opt/z2z/bin/z2z /usr/local/bin/z2z\n",
    )
    return chroot(root, "z2z --version").strip()
