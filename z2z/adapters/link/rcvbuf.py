"""Bursts on a busy link: a receive buffer sized for them, drops the kernel reports, re-queries.

A campus where every device answers a query at once (a gateway starting, 50
printer hosts announcing 3,000 services in 30 s) overflows a default UDP
receive buffer (~208 KiB): the kernel drops datagrams and nobody logs it
(issue 17 saw 8,661 drops against 495 delivered).  python-zeroconf does not
browse again until its PTR refresh at 75 % of the TTL (an hour for 4,500 s).
So the zeroconf link (a) asks for `RECEIVE_BUFFER` bytes on its sockets
(Linux caps SO_RCVBUF at ``net.core.rmem_max``; SO_RCVBUFFORCE, with
CAP_NET_ADMIN, does not), (b) reads the kernel's per-socket drop counter
(``drops``, the last column of /proc/net/udp and /proc/net/udp6, matched by the
socket's inode) and (c) sends a reconciliation query when drops happened, and
otherwise on a slow period that doubles up to an hour (RFC 6762 §5.2).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 4 * 1024 * 1024
PROC_UDP = (Path("/proc/net/udp"), Path("/proc/net/udp6"))


def size_receive_buffer(sock: socket.socket, wanted: int = RECEIVE_BUFFER) -> int:
    """Ask for `wanted` bytes of receive buffer; return what the kernel granted (its doubled value)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, wanted)  # past rmem_max, needs CAP_NET_ADMIN
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)  # capped at net.core.rmem_max
        except OSError as exc:
            log.debug("cannot set SO_RCVBUF: %s", exc)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def socket_inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def _udp_sockets(tables: Iterable[Path]) -> Iterator[list[str]]:
    """The fields of each socket row of /proc/net/udp{,6}: sl, local (hex addr:port), remote,
    st, tx:rx, tr:when, retrnsmt, uid, timeout, inode, ref, pointer, drops; unreadable tables skipped."""
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[12].isdigit():
                yield fields


def port_drops(port: int = 5353, tables: Iterable[Path] = PROC_UDP) -> int:
    """Datagrams the kernel dropped on every UDP socket bound to `port` in this network namespace.

    For the Avahi backend: the mDNS sockets are avahi-daemon's, not ours, and their
    inodes cannot be told from its file descriptors without its privileges, but
    /proc/net/udp{,6} lists every socket of the namespace with its local port.
    """
    hex_port = f"{port:04X}"
    return sum(int(f[12]) for f in _udp_sockets(tables) if f[1].rpartition(":")[2] == hex_port)


def socket_drops(inodes: Iterable[int], tables: Iterable[Path] = PROC_UDP) -> int:
    """Datagrams the kernel dropped on these sockets (full buffer), from /proc/net/udp{,6}."""
    wanted = set(inodes)
    return sum(int(f[12]) for f in _udp_sockets(tables) if f[9].isdigit() and int(f[9]) in wanted)


class Reconciler:
    """When to re-query the link: soon after new drops, else on a period doubling to an hour.

    `due(drops, now)` is asked every few seconds with the drop count read then;
    it answers True when a reconciliation query should go out now.  The first
    drops are answered at once; while drops go on, the gap between re-queries
    doubles from `after_drops` to `longest_gap` (a re-query's answers, and its
    own known-answer list, are more traffic on a link already too busy: at
    5,000 services a re-query every 5 s kept the drops coming).  A quiet
    `longest_gap` brings the gap back to `after_drops`.
    """

    def __init__(
        self,
        first: float = 60.0,
        longest: float = 3600.0,
        after_drops: float = 5.0,
        hint: str = "raise net.core.rmem_max",
        longest_gap: float = 60.0,
    ) -> None:
        self.first, self.longest, self.after_drops = first, longest, after_drops
        self.longest_gap = longest_gap
        self.hint = hint  # what the admin can do, in the one log line
        self.period = first
        self.gap = after_drops  # between re-queries while drops go on
        self.next_at: float | None = None
        self.drops = 0  # seen so far (the metric)
        self._baseline: int | None = None
        self._last_query = float("-inf")
        self._last_drops = float("-inf")
        self._logged = False
        self.queries = 0

    def due(self, drops: int, now: float) -> bool:
        if self._baseline is None:
            self._baseline = drops
        new = drops - self._baseline
        if self.next_at is None:
            self.next_at = now + self.period
        if new > self.drops:
            fresh = new - self.drops
            self.drops = new
            self._last_drops = now
            level = logging.WARNING if not self._logged else logging.DEBUG
            self._logged = True
            log.log(
                level,
                "the kernel dropped %d mDNS datagrams (receive buffer full: %s); "
                "re-querying the link; further drops are only counted",
                fresh,
                self.hint,
            )
            self.period = self.first  # busy link: start the slow schedule afresh
            self.next_at = min(self.next_at, self._last_query + self.gap)
        elif now - self._last_drops >= self.longest_gap:
            self.gap = self.after_drops
        if now < self.next_at:
            return False
        after_drops = self._last_drops > self._last_query
        fired = self._fire(now)
        if after_drops:
            self.gap = min(self.gap * 2, self.longest_gap)
        else:
            self.period = min(self.period * 2, self.longest)
            self.next_at = now + self.period
        return fired

    def _fire(self, now: float) -> bool:
        self._last_query = now
        self.queries += 1
        self.next_at = now + self.period
        return True
