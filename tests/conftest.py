"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import ci_skips
from support.testbed import Testbed, skip_reason


def pytest_configure(config: pytest.Config) -> None:
    """Under CI=true a skipped test fails, naming what is missing (support/ci_skips.py)."""
    if not config.pluginmanager.is_registered(ci_skips):
        config.pluginmanager.register(ci_skips, "z2z-ci-skips")


# --- testbed: two campuses on network namespaces (tests/support/testbed.py) -----------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def testbed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A fresh `testbed.Testbed` (no DHT yet: call ``start_dht()``), closed after the test.

    Skipped, with the reason, where namespaces or dhtnode are unavailable.  On
    failure the tails of every process's logs are printed (pytest shows them
    under "Captured stdout teardown"); set Z2Z_KEEP_LOGS=1 to keep the files.
    """
    yield from managed_testbed(request)


@pytest.fixture
def tb3(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A testbed with a third campus, c (``c-gw``, ``c-printer``, ``c-client``)."""
    yield from managed_testbed(request, {"c-gw": ("c", 2), "c-printer": ("c", 10), "c-client": ("c", 20)})


def managed_testbed(
    request: pytest.FixtureRequest,
    hosts: dict[str, tuple[str, int]] | None = None,
) -> Iterator[Testbed]:
    """Skip where namespaces are unavailable; print the logs if the test failed; always close."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tb = Testbed(hosts=hosts or {})
    try:
        yield tb
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            print(tb.dump_logs())
        tb.close()


# --- dht_network: two real dhtnodes on 127.0.0.1 (tests/support/dhtnet.py) ----------------


@pytest.fixture
def dht_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A started two-node `dhtnet.DhtNetwork` on loopback (≈1 s to start), stopped after the test.

    Skipped where dhtnode is not installed.  Logs: ``net.log_tail(i)``.
    """
    from support.dhtnet import DhtNetwork, have_dhtnode

    if not have_dhtnode():
        pytest.skip("needs dhtnode (Debian package dhtnode)")
    net = DhtNetwork(tmp_path_factory.mktemp("dht"))
    net.start()
    try:
        yield net
    finally:
        net.stop()
