"""Bounded fuzzing in CI: every target under fuzz/ for a fixed number of inputs.

With atheris (x86_64 wheels) each target runs coverage-guided in a subprocess
(libFuzzer: ``-runs``, a per-input ``-timeout`` that catches hangs and an
``-rss_limit_mb`` that catches unbounded memory); without it, the same
`one_input` gets seeds, mutations and random bytes in-process.  `make fuzz`
runs the same targets longer.  Inputs that once crashed live in
fuzz/regressions/ and are replayed through every target.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = sorted(p.stem for p in FUZZ.glob("fuzz_*.py"))
RUNS = int(os.environ.get("Z2Z_FUZZ_RUNS", "25000"))  # x 4 targets: 100,000 inputs per CI run
sys.path.insert(0, str(FUZZ))

try:
    import atheris  # noqa: F401

    HAVE_ATHERIS = True
except ImportError:
    HAVE_ATHERIS = False


def target(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(name)


def test_there_is_a_target_per_parser() -> None:
    assert TARGETS == ["fuzz_config", "fuzz_dns_query", "fuzz_protocol", "fuzz_sealed"]


@pytest.mark.parametrize("name", TARGETS)
def test_regressions_and_seeds(name: str) -> None:
    mod = target(name)
    for data in [*mod.seeds(), *(p.read_bytes() for p in sorted((FUZZ / "regressions").iterdir()))]:
        mod.one_input(data)


@pytest.mark.parametrize("name", TARGETS)
def test_bounded_fuzz_run(name: str, tmp_path: Path) -> None:
    if not HAVE_ATHERIS:
        from common import run_plain

        n, _ = run_plain(target(name).one_input, target(name).seeds(), RUNS)
        assert n == RUNS
        return
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(target(name).seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    cmd = [
        sys.executable,
        str(FUZZ / f"{name}.py"),
        f"-runs={RUNS}",
        "-max_len=4096",
        "-timeout=10",
        "-rss_limit_mb=1024",
        "-max_total_time=300",
        "-seed=1",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=FUZZ)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"{name} found a crash, hang or leak:\n{tail}"
    assert f"Done {RUNS} runs" in proc.stderr, tail
