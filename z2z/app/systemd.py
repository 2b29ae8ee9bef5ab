"""systemd service integration without a dependency: readiness, status and watchdog.

The whole sd_notify protocol z2z needs is one datagram per message to the
AF_UNIX socket named in ``$NOTIFY_SOCKET`` (``@name`` = abstract namespace).
Without that variable (not under systemd, or ``Type=simple``) every call is a
no-op, so the gateway runs the same everywhere.

`ServiceNotifier` is what the runtime uses:

- ``READY=1`` once, when the gateway is bridging or following its island's
  leader (what ``Type=notify`` waits for before ``systemctl start`` returns);
- ``STATUS=...`` whenever the one-line summary changes (``systemctl status``);
- ``WATCHDOG=1`` every half ``WatchdogSec`` from a job of the gateway's scheduler
  on the event loop, so a blocked loop misses the deadline and systemd restarts the service;
- ``RELOADING=1`` / ``STOPPING=1`` around a reload and at a clean stop.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False when not under systemd (or it failed)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        # Non-blocking: a full queue on systemd's side drops a message, never stalls the loop.
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        with socket.socket(socket.AF_UNIX, kind) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 2e6


class ServiceNotifier:
    """Readiness, status and watchdog for one gateway (all no-ops without systemd)."""

    def __init__(self) -> None:
        self.ready = False
        self._status = ""
        # Seconds between pings (half WatchdogSec), None without a watchdog.  The
        # gateway's scheduler pings on the event loop, so a blocked loop misses it.
        self.watchdog_interval = watchdog_interval()

    def update(self, ready: bool, status: str) -> None:
        """Called every second by the runtime: READY=1 the first time `ready`, STATUS on change."""
        lines = []
        if ready and not self.ready:
            self.ready = True
            lines.append("READY=1")
        if status != self._status:
            self._status = status
            lines.append(f"STATUS={status}")
        if lines:
            notify(*lines)

    def reloading(self) -> None:
        notify("RELOADING=1")

    def reloaded(self) -> None:
        notify("READY=1")

    def stopping(self) -> None:
        notify("STOPPING=1")

    def ping_watchdog(self) -> None:
        notify("WATCHDOG=1")
