"""`make pi-check`: z2z on arm64 (a Raspberry Pi's 64-bit OS) under qemu-user-static.

An arm64 Debian 12 root (cached in /var/cache/z2z-arm64) made with debootstrap;
binfmt_misc runs its binaries through qemu-aarch64-static.  In it, z2z is installed
the way docs/raspberry-pi.md tells a Pi user (apt-get, venv, pip from PyPI, which
must find aarch64 wheels of opendht, zeroconf and cryptography), then:

- ``z2z --version`` and ``z2z check-config contrib/z2z.toml``;
- Debian's arm64 python3-avahi/dbus/gi and PyPI's aarch64 opendht, zeroconf,
  cryptography import;
- the pure-core unit tests (tests/unit/core) run under arm64;
- with ``--testbed`` (``make pi-check PI_ARGS=--testbed``; it takes the shared netns
  lock, /tmp/z2z-netns.lock, for that part): a gateway running from
  the arm64 root (chroot inside campus A's gateway namespace) bridges a printer to a
  native gateway on campus B and back, judged by avahi-browse against real
  avahi-daemons, and its RSS is measured with 100 bridged services.

Needs root, debootstrap, qemu-user-static and binfmt-support.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
from pathlib import Path

from roots import (
    DOC_PACKAGES,
    REPO,
    CheckFailed,
    Timings,
    chroot,
    debootstrap,
    enable_binfmt,
    forbid_service_starts,
    install_z2z,
    mounted,
    need_root_and_tools,
    say,
    trust_host_cas,
)

ROOT = Path("/var/cache/z2z-arm64")
NETNS_LOCK = "/tmp/z2z-netns.lock"  # shared with every netns test run on this machine
IMPORTS = "import opendht, zeroconf, cryptography, avahi, dbus, gi; print(opendht.__file__)"


def prepare(t: Timings) -> str:
    with t.step("binfmt_misc + qemu-aarch64"):
        enable_binfmt()
    with t.step("debootstrap --arch=arm64 (cached)"):
        made = debootstrap(ROOT, arch="arm64")
        say(f"   {'made' if made else 'reused'} {ROOT}")
    with mounted(ROOT):
        forbid_service_starts(ROOT)
        with t.step("apt-get install (docs/raspberry-pi.md step 2)"):
            pkgs = " ".join(DOC_PACKAGES)
            install = f"apt-get update -q && apt-get install -y -q {pkgs}"
            chroot(ROOT, f"dpkg -s {pkgs} >/dev/null 2>&1 || ({install})", timeout=3600)
        trust_host_cas(ROOT)
        with t.step("install z2z (clone, venv, pip install from PyPI, arm64)"):
            version = install_z2z(ROOT)
            say(f"   {version}")
    (ROOT / "usr/sbin/policy-rc.d").unlink()
    return version


def checks(t: Timings, results: list[tuple[str, str]]) -> None:
    def ok(what: str, figure: str) -> None:
        results.append((what, figure))
        say(f"   PASS {what}: {figure}")

    with mounted(ROOT):
        with t.step("uname, python, wheels"):
            machine = chroot(ROOT, "uname -m").strip()
            if machine != "aarch64":
                raise CheckFailed(f"the root runs as {machine}, not aarch64")
            py = chroot(
                ROOT, "python3 -c 'import platform; print(platform.python_version(), *platform.libc_ver())'"
            )
            ok("arm64 root", f"uname -m {machine}; Python, libc: {py.strip()}")
            wheels = chroot(
                ROOT,
                "/opt/z2z/bin/pip list --format=freeze 2>/dev/null | "
                "grep -iE '^(opendht|zeroconf|cryptography|dnslib|httpx)=='",
            )
            ok("from PyPI for aarch64", ", ".join(wheels.split()))
            where = chroot(ROOT, f"/opt/z2z/bin/python -c '{IMPORTS}'").strip()
            ok("imports (opendht, zeroconf, cryptography; Debian's avahi, dbus, gi)", where)
        with t.step("z2z --version, z2z check-config"):
            ok("z2z --version", chroot(ROOT, "z2z --version").strip())
            out = chroot(ROOT, "z2z check-config /opt/z2z/src/contrib/z2z.toml")
            ok("z2z check-config contrib/z2z.toml", out.strip().splitlines()[-1])
        with t.step("pure-core unit tests under arm64"):
            chroot(ROOT, "/opt/z2z/bin/pip install --quiet pytest pytest-asyncio hypothesis", timeout=1800)
            out = chroot(
                ROOT,
                "cd /opt/z2z/src && /opt/z2z/bin/python -m pytest -q -p no:cacheprovider tests/unit/core",
                timeout=3600,
            )
            ok("tests/unit/core under arm64", out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--testbed", action="store_true", help="also run the arm64 gateway on the netns testbed"
    )
    parser.add_argument(
        "--testbed-only",
        action="store_true",
        help="only the testbed part, with z2z as the last run installed it",
    )
    args = parser.parse_args()
    need_root_and_tools(
        "debootstrap",
        "qemu-aarch64-static",
        "update-binfmts",
        packages="debootstrap qemu-user-static binfmt-support",
    )
    t = Timings()
    results: list[tuple[str, str]] = []
    try:
        if args.testbed_only:
            with mounted(ROOT):
                version = chroot(ROOT, "z2z --version").strip()
        else:
            version = prepare(t)
            checks(t, results)
        if args.testbed or args.testbed_only:
            sys.path.insert(0, str(REPO / "tests"))
            from pi_testbed import run_on_testbed

            with open(NETNS_LOCK, "a") as lock:
                say(f"== waiting for {NETNS_LOCK} (netns tests run one at a time on this machine)")
                fcntl.flock(lock, fcntl.LOCK_EX)
                with t.step("arm64 gateway on the netns testbed"):
                    run_on_testbed(ROOT, results)
    except CheckFailed as exc:
        say(f"FAIL: {exc}")
        return 1
    say(f"\npi-check passed ({version}, arm64 under qemu-user-static):")
    for what, figure in results:
        say(f"| {what} | {figure} |")
    say("\ntimings:\n" + t.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
