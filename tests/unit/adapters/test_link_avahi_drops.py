"""Bursts with the Avahi backend: drops counted by port on real sockets, and a re-browse
only after drops (continuous querying is avahi-daemon's own)."""

from __future__ import annotations

import logging
import socket

import pytest

from z2z.adapters.link.avahi.reconcile import avahi_reconciler
from z2z.adapters.link.rcvbuf import port_drops


def test_drops_are_counted_for_every_socket_on_a_port() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as full,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        full.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        full.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        port, other_port = full.getsockname()[1], other.getsockname()[1]
        assert port_drops(port) == 0
        for _ in range(500):  # never read: the buffer overflows
            sender.sendto(b"x" * 1000, full.getsockname())
        assert port_drops(port) > 0
        assert port_drops(other_port) == 0


def test_the_avahi_reconciler_fires_only_after_drops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = avahi_reconciler()
    assert not any(r.due(0, float(t)) for t in range(0, 100_000, 7))  # no period of its own
    assert r.due(30, 100_000.0)  # drops: at once
    assert not r.due(30, 100_001.0) and not any(r.due(30, 100_000.0 + t) for t in range(2, 50_000, 13))
    assert r.drops == 30
    assert r.due(40, 200_000.0)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "net.core.rmem_default" in warnings[0]  # one line, then only counted
