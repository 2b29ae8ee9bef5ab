"""Z2Z_MEMWATCH: the memory reports a user can switch on in a running gateway."""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from z2z.app.memwatch import MemWatch, container_sizes, interval_from_env
from z2z.core.flap import FlapDamper


def test_the_interval_comes_from_the_environment_and_bad_values_leave_it_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert interval_from_env({}) is None
    assert interval_from_env({"Z2Z_MEMWATCH": "30"}) == 30.0
    assert interval_from_env({"Z2Z_MEMWATCH": "soon"}) is None
    assert interval_from_env({"Z2Z_MEMWATCH": "-1"}) is None
    assert sum("memory watching stays off" in r.message for r in caplog.records) == 2


class _Holder:
    def __init__(self) -> None:
        self.damper = FlapDamper(10.0)


def test_container_sizes_reach_z2z_dicts_through_z2z_objects() -> None:
    holder = _Holder()
    holder.__class__.__module__ = "z2z.test"  # walked like a z2z object
    holder.damper.flap(("a", "b"), 0.0)
    sizes = container_sizes(holder, "root")
    assert sizes["root.damper._merits"] == 1


class _Blob:
    def __init__(self) -> None:
        self.payload = bytearray(64)


def test_a_report_logs_rss_growth_sites_object_counts_and_changed_sizes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    damper = FlapDamper(10.0)
    watch = MemWatch({"damper": damper})
    was_tracing = tracemalloc.is_tracing()
    try:
        with caplog.at_level(logging.INFO, logger="z2z.app.memwatch"):
            watch.report()
            kept = [_Blob() for _ in range(2000)]
            for i in range(5):
                damper.flap(i, 0.0)
            watch.report()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "memwatch #2: VmRSS" in text
    assert "memwatch since last:" in text and "test_memwatch.py" in text
    assert "memwatch objects since first:" in text and "_Blob" in text
    assert "memwatch size damper._merits = 5 (first 0)" in text
    assert len(kept) == 2000
