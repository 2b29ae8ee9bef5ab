"""Bursts on the link (issue 17): buffer sizing and the kernel's drop counter on real
sockets, and the reconciliation schedule (at once after drops, else doubling to an hour)."""

from __future__ import annotations

import itertools
import logging
import math
import socket

import pytest

from z2z.adapters.link.rcvbuf import Reconciler, size_receive_buffer, socket_drops, socket_inode


def test_a_receive_buffer_is_sized_and_the_kernel_grant_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        granted = size_receive_buffer(sock, 64 * 1024)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= min(default, 2 * 64 * 1024)  # Linux doubles what it grants


def test_drops_of_a_full_buffer_are_counted_per_socket() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as full,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as idle,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        full.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        full.bind(("127.0.0.1", 0))
        idle.bind(("127.0.0.1", 0))
        assert socket_drops([socket_inode(full)]) == 0
        for _ in range(500):  # never read: the buffer overflows
            sender.sendto(b"x" * 1000, full.getsockname())
        assert socket_drops([socket_inode(full)]) > 0
        assert socket_drops([socket_inode(idle)]) == 0


def test_reconciliation_backs_off_and_comes_at_once_after_drops(caplog: pytest.LogCaptureFixture) -> None:
    r = Reconciler(first=60.0, longest=3600.0, after_drops=5.0)
    fired = [t for t in range(0, 8000) if r.due(0, float(t))]
    assert fired[:4] == [60, 180, 420, 900]  # 60 s, then doubling (RFC 6762 §5.2)
    assert all(b - a <= 3600 for a, b in itertools.pairwise(fired))
    assert fired[-1] - fired[-2] == 3600  # capped at an hour
    caplog.set_level(logging.DEBUG, logger="z2z.adapters.link.rcvbuf")
    assert r.due(10, 8000.0)  # drops: a re-query at once
    assert not r.due(20, 8001.0)  # more drops: not at once again
    assert r.drops == 20
    assert [t for t in range(2, 12) if r.due(20, 8000.0 + t)] == [10]  # the deferred one, 10 s after
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "net.core.rmem_max" in warnings[0].getMessage()


def test_while_drops_go_on_re_queries_back_off_and_a_quiet_minute_resets_them() -> None:
    """A re-query is traffic too: under drops that never stop it must not come every 5 s."""
    r = Reconciler(first=60.0, longest=3600.0, after_drops=5.0)
    r.due(0, 0.0)
    fired = [t for t in range(1, 400) if r.due(t, float(t))]  # new drops at every check
    assert [b - a for a, b in itertools.pairwise(fired)][:5] == [10, 20, 40, 60, 60]
    assert fired[0] == 1 and all(b - a == 60 for a, b in itertools.pairwise(fired[3:]))
    quiet = [t for t in range(400, 470) if r.due(399, float(t))]  # no new drops for 70 s
    assert r.gap == 5.0 and len(quiet) <= 1
    assert r.due(400, 470.0)  # drops after a quiet minute: at once again
    avahi = Reconciler(first=math.inf, longest=math.inf)  # fires only after drops
    fired = [t for t in range(1, 400) if avahi.due(t, float(t))]
    assert [b - a for a, b in itertools.pairwise(fired)][:5] == [10, 20, 40, 60, 60]
    assert len([t for t in range(400, 470) if avahi.due(399, float(t))]) <= 1 and avahi.gap == 5.0


async def test_the_zeroconf_link_sizes_its_sockets_and_re_queries_with_python_zeroconf() -> None:
    """On loopback only: the link's sockets get the burst buffer and `requery` sends a PTR question."""
    import asyncio

    from zeroconf import IPVersion

    from z2z.adapters.link.zeroconf import ZeroconfLink

    class Listener:
        def service_up(self, service: object) -> None: ...
        def service_down(self, service_type: str, instance: str) -> None: ...
        def service_refused(self, name: str, reason: str) -> None: ...

    link = ZeroconfLink(["127.0.0.1"], ip_version=IPVersion.V4Only)
    await link.start(["_ipp._tcp"], Listener())  # type: ignore[arg-type]
    try:
        assert link._aiozc is not None
        zc = link._aiozc.zeroconf
        for reader in zc.engine.readers:  # sized (or the kernel's cap was logged)
            assert reader.fileno in link._sized
        sent: list[list[str]] = []
        original = zc.async_send

        def spy(out, *args, **kwargs):  # type: ignore[no-untyped-def]
            sent.append([q.name for q in out.questions])
            return original(out, *args, **kwargs)

        zc.async_send = spy  # type: ignore[method-assign]
        # Our own start-up questions are "recent" for 1 s (RFC 6762 §7.3 duplicate suppression).
        await asyncio.sleep(2.5)
        sent.clear()
        link.requery()
        assert ["_ipp._tcp.local."] in sent
        assert link.kernel_drops == 0
    finally:
        await link.close()
