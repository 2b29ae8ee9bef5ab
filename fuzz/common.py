"""Shared driver of the fuzz targets in this folder (see README.md beside it).

Each ``fuzz_*.py`` defines ``one_input(data: bytes) -> None``, which must only
ever raise the exceptions its parser documents (it swallows those), and
``seeds() -> list[bytes]``, valid inputs for the fuzzer to start from.  Run as
a script, a target fuzzes with atheris (libFuzzer flags pass through, e.g.
``-runs=100000``); `run_plain` is the fallback without atheris: seeds, their
random mutations and random bytes, from a fixed seed.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

try:
    import atheris
except ImportError:  # no wheel for this platform: run_plain still works
    atheris = None

Target = Callable[[bytes], None]


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Instrument what is imported inside (coverage feedback) when fuzzing with atheris."""
    if atheris is not None and os.environ.get("Z2Z_FUZZ_INSTRUMENT", "1") == "1" and _running_as_fuzzer():
        return atheris.instrument_imports(include=["z2z", "dnslib", "tomllib"])
    return contextlib.nullcontext()


def _running_as_fuzzer() -> bool:
    main = sys.modules.get("__main__")
    return bool(main and os.path.basename(getattr(main, "__file__", "") or "").startswith("fuzz_"))


def fuzz(one_input: Target, seeds: Callable[[], list[bytes]]) -> None:
    """Entry point of every target script: atheris with a seed corpus, else `run_plain`."""
    argv = list(sys.argv)
    if atheris is None:
        runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("-runs=")), 20000)
        n, seconds = run_plain(one_input, seeds(), runs)
        print(f"plain run (atheris not installed): {n} inputs in {seconds:.1f} s, no crash")
        return
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:  # no corpus given: start from the seeds, in a temporary folder
        corpus = tempfile.mkdtemp(prefix="z2z-fuzz-")
        for i, s in enumerate(seeds()):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as fh:
                fh.write(s)
        argv.append(corpus)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few random edits: flip, truncate, insert, duplicate a slice, splice in bytes."""
    w = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        if op == 0 and w:
            w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
        elif op == 1 and w:
            w[rng.randrange(len(w))] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x22, 0x5C, 0x2E, rng.randrange(256)])
        elif op == 2:
            w = w[: rng.randrange(len(w) + 1)]
        elif op == 3:
            w.insert(rng.randrange(len(w) + 1), rng.randrange(256))
        elif op == 4 and w:
            i = rng.randrange(len(w))
            j = min(len(w), i + rng.randrange(1, 64))
            w[i:i] = w[i:j] * rng.randint(1, 8)
        else:
            i = rng.randrange(len(w) + 1)
            w[i:i] = rng.randbytes(rng.randrange(1, 16))
    return bytes(w[:65536])


def inputs(seeds: list[bytes], count: int, seed: int = 5) -> Iterator[bytes]:
    """`count` inputs: the seeds, then 3/4 mutations of seeds, 1/4 random bytes."""
    rng = random.Random(seed)
    yield from seeds[:count]
    for _ in range(count - min(count, len(seeds))):
        if seeds and rng.random() < 0.75:
            yield mutate(rng, rng.choice(seeds))
        else:
            yield rng.randbytes(rng.randrange(300))


def run_plain(one_input: Target, seeds: list[bytes], count: int, seed: int = 5) -> tuple[int, float]:
    """Feed `count` inputs to `one_input`; returns (inputs run, seconds). Exceptions propagate."""
    t0 = time.monotonic()
    n = 0
    for data in inputs(seeds, count, seed):
        one_input(data)
        n += 1
    return n, time.monotonic() - t0
