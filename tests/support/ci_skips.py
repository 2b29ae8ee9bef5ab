"""Under ``CI=true`` a skipped test is a failed test.

Tests skip, with a reason, where a tool or daemon they drive is missing (dhtnode,
avahi-daemon, dig, chromium, root for network namespaces...).  On a developer's
machine that keeps the suite usable; in CI it would let a run end green without
the tests that matter, so there every skip, at run time or at collection
(``importorskip``), becomes a failure that names what is missing.  tests/conftest.py
registers this module as a plugin; ``pytest -p support.ci_skips`` does too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def ci_strict() -> bool:
    """True in CI (``CI=true``, as CI services and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _reason(longrepr: object) -> str:
    """The skip reason out of a skipped report (a (path, line, "Skipped: why") tuple)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _as_failure(report: pytest.TestReport | pytest.CollectReport, where: str) -> None:
    report.outcome = "failed"
    why = _reason(report.longrepr)
    report.longrepr = f"CI=true: {where} would be skipped, which CI does not allow: {why}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if ci_strict() and report.skipped and not hasattr(report, "wasxfail"):
        _as_failure(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if ci_strict() and report.skipped:
        _as_failure(report, collector.nodeid or "this module")
