"""`make test` sets itself up: tests/support/setup-debian.sh and the CI=true rule for skips.

The script runs for real here: as an unprivileged user (it must say in one line
what it needs) and, where every package is present, as root (the fast path: no
apt-get, well under a few seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "tests" / "support" / "setup-debian.sh"

needs_debian = pytest.mark.skipif(
    shutil.which("dpkg-query") is None, reason="needs dpkg-query (a Debian system)"
)


@pytest.fixture
def public_copy() -> Iterator[Path]:
    """Makefile and the setup script in a directory nobody can read.

    The checkout itself may not be (a clone under /root or a 0700 home), and the
    unprivileged run must fail for want of root, not for want of the file.
    """
    top = Path(tempfile.mkdtemp(prefix="z2z-setup-"))
    try:
        (top / "tests" / "support").mkdir(parents=True)
        shutil.copy2(REPO / "Makefile", top / "Makefile")
        shutil.copy2(SETUP, top / "tests" / "support" / SETUP.name)
        for d in (top, top / "tests", top / "tests" / "support"):
            d.chmod(0o755)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run argv unprivileged: as nobody when we are root, as ourselves otherwise."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (Debian util-linux)")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@needs_debian
def test_without_root_it_says_in_one_line_what_it_needs(public_copy: Path) -> None:
    proc = as_nobody([str(public_copy / "tests" / "support" / SETUP.name)], cwd=public_copy)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "needs root" in lines[0] and "sudo make test" in lines[0] and "make test-unit" in lines[0]


@needs_debian
def test_make_test_without_root_stops_at_that_line(public_copy: Path) -> None:
    """`make test` itself: the setup's line comes first and nothing else runs."""
    proc = as_nobody(["make", "--no-print-directory", "test"], cwd=public_copy)
    assert proc.returncode != 0
    assert proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith("make test (tests/support/setup-debian.sh): needs root"), proc.stderr
    assert "ruff" not in proc.stderr and "pytest" not in proc.stderr


@needs_debian
def test_fast_path_when_nothing_is_missing(tmp_path: Path) -> None:
    """As root with every package present: no apt-get at all, and about a tenth of a second."""
    if os.geteuid() != 0:
        pytest.skip("the install step runs as root")
    check = subprocess.run([str(SETUP), "--check"], capture_output=True, text=True, timeout=60, check=False)
    if check.returncode != 0:
        pytest.skip(f"run make test first: {check.stdout.strip()}")
    # An apt-get that fails loudly proves the fast path never calls it.
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in ("apt-get", "apt"):
        (shim / tool).write_text(f"#!/bin/sh\necho '{tool} called' >&2\nexit 99\n")
        (shim / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    t0 = time.monotonic()
    proc = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=60, env=env, check=False)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "called" not in proc.stderr
    assert "Debian packages present" in proc.stdout
    assert took < 3.0, f"fast path took {took:.2f} s"
    # idempotent: a second run says the same
    again = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == proc.stdout.splitlines()[-1]


SAMPLE = """
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="needs frobnicator (Debian package frob)")
def test_marker_skip():
    pass

def test_runtime_skip():
    pytest.skip("needs dhtnode (Debian package dhtnode)")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfail():
    assert False
"""

SAMPLE_MODULE = """
import pytest
pytest.importorskip("no_such_module_z2z", reason="needs python3-nosuch")

def test_never_collected():
    pass
"""


def run_sample(
    tmp_path: Path, ci: str | None, *, with_module: bool = False
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    if with_module:
        (tmp_path / "test_sample_module.py").write_text(SAMPLE_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO / "tests")
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "support.ci_skips"]
    return subprocess.run(
        [*argv, "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_skips_stay_skips_outside_ci(tmp_path: Path) -> None:
    proc = run_sample(tmp_path, ci=None, with_module=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in proc.stdout


def test_under_ci_a_skip_fails_naming_what_is_missing(tmp_path: Path) -> None:
    proc = run_sample(tmp_path, ci="true")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # a skip in setup (a marker, a fixture) is an error, one in the test body a failure
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out.splitlines()[-1], out
    for missing in ("needs frobnicator (Debian package frob)", "needs dhtnode (Debian package dhtnode)"):
        assert f"which CI does not allow: {missing}" in out


def test_under_ci_a_module_skip_stops_the_run_naming_what_is_missing(tmp_path: Path) -> None:
    """A module-level importorskip becomes a collection error: pytest stops before running."""
    proc = run_sample(tmp_path, ci="true", with_module=True)
    out = proc.stdout
    assert proc.returncode == 2, out + proc.stderr
    assert "which CI does not allow: needs python3-nosuch" in out
    assert "1 error" in out.splitlines()[-1]
