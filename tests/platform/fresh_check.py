"""`make fresh-check`: the README's `make test` on a Debian 12 that has nothing yet.

What a newcomer does, on a root made for this run only (debootstrap minbase, so
nothing of this machine's setup leaks in): install `make git ca-certificates`,
clone into /root (mode 0700, as a root user's clone is), and run `make test` with
``CI=true`` so that any test that would be skipped for a missing tool or daemon
fails instead.  Each step is timed; the full log is kept outside the repository
(``/var/cache/z2z-fresh-logs/``).  docs/development.md records the last result.

Root only; about 30 minutes on two cores (the whole test suite, in the root).
Not in `make test` (it *is* `make test`, once more, from scratch).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from roots import (
    REPO,
    CheckFailed,
    Timings,
    chroot,
    debootstrap,
    forbid_service_starts,
    mounted,
    need_root_and_tools,
    run,
    say,
    trust_host_cas,
)

ROOT = Path("/var/cache/z2z-fresh-check")
LOGS = Path("/var/cache/z2z-fresh-logs")


def summary(log: str) -> str:
    """pytest's last line ("N passed, M xfailed in T s"), or the log's tail."""
    for line in reversed(log.splitlines()):
        if re.search(r"\b(passed|failed|error)\b", line) and " in " in line:
            return line.strip("= ")
    return "\n".join(log.splitlines()[-10:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the root in place afterwards")
    ap.add_argument(
        "--command",
        default="CI=true make test",
        help="what to run in the clone (default: %(default)s; e.g. 'make system' to try the setup alone)",
    )
    args = ap.parse_args()
    need_root_and_tools("debootstrap", "chroot", packages="debootstrap")
    commit = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
    times = Timings()
    if ROOT.exists():
        subprocess.run(["umount", "-R", "-l", str(ROOT)], check=False, capture_output=True)
        shutil.rmtree(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    log_path = LOGS / f"make-test-{stamp}-{commit}.log"
    with times.step("debootstrap --variant=minbase bookworm"):
        debootstrap(ROOT)
    forbid_service_starts(ROOT)
    with mounted(ROOT):
        with times.step("apt-get install make git ca-certificates"):
            chroot(ROOT, "apt-get update -qq && apt-get install -y -qq make git ca-certificates >/dev/null")
        trust_host_cas(ROOT)
        # apt may start services in `make test`'s own setup step: it guards that itself.
        (ROOT / "usr/sbin/policy-rc.d").unlink()
        with times.step("git clone (into /root, mode 0700)"):
            run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(ROOT / "root/z2z")])
            (ROOT / "root").chmod(0o700)
        with times.step(args.command):
            proc = subprocess.run(
                ["chroot", str(ROOT), "/bin/sh", "-c", f"cd /root/z2z && {args.command}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root",
                    "LANG": "C.UTF-8",
                },
                check=False,
            )
        log_path.write_text(proc.stdout)
        with times.step("make system again (nothing missing)"):
            again = chroot(ROOT, "cd /root/z2z && make --no-print-directory system", check=False)
    if not args.keep:
        shutil.rmtree(ROOT)
    say(f"commit {commit}; log {log_path}")
    say(f"{args.command}: exit {proc.returncode}: {summary(proc.stdout)}")
    say(f"second setup: {again.strip().splitlines()[-1] if again.strip() else '(no output)'}")
    say(times.table())
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as exc:
        sys.exit(f"fresh-check: {exc}")
