"""Bursts on a busy link, with Avahi: drops counted, a fresh browse when the kernel dropped some.

avahi-daemon owns the mDNS sockets, so what the python-zeroconf link does for
itself (z2z.adapters.link.rcvbuf) is split here between what Avahi already
does and what z2z can add:

* **Continuous querying** (RFC 6762 §5.2) is Avahi's own: each browser re-sends
  its query with a doubling interval (up to an hour), so no slow period is
  added here.
* **Receive buffer.**  avahi-daemon does not size its sockets: they get the
  kernel default, ``net.core.rmem_default`` (~208 KiB), which a campus burst
  overflows.  z2z cannot change another process's sockets; raising
  ``net.core.rmem_default`` is the admin's lever (docs/reliability.md).
* **Drops** are counted from /proc/net/udp{,6}: the kernel's per-socket
  ``drops`` of every socket bound to port 5353 in this network namespace
  (`port_drops`; avahi-daemon's, as z2z opens none with this backend).  New
  drops are one WARNING line and the ``z2z_link_kernel_drops`` metric.
* **Reconciliation.**  After new drops, a second ServiceBrowser per type is
  opened for `RECONCILE_HOLD` seconds: a new browser makes avahi-daemon send a
  query at once (with known answers, so responders answer only what it lacks)
  and report what its cache holds; answers go to the same handler as the
  first browser's, where a known instance is a no-op.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time

import dbus

from z2z.adapters.link.avahi.bus import _AvahiError, _Gone
from z2z.adapters.link.avahi.discovery import _Discovery
from z2z.adapters.link.rcvbuf import Reconciler, port_drops

log = logging.getLogger(__name__)

RECONCILE_CHECK = 2.0  # seconds between reads of the drop counters
RECONCILE_HOLD = 5.0  # how long the extra browsers stay open (avahi says AllForNow after ~1 s)
MDNS_PORT = 5353


def avahi_reconciler() -> Reconciler:
    """Fires only after drops: the periodic re-query is Avahi's own continuous querying."""
    return Reconciler(
        first=math.inf,
        longest=math.inf,
        hint="avahi-daemon's sockets get net.core.rmem_default: raise it",
    )


class _Reconcile(_Discovery):
    """Drop counting and reconciliation browses, for `AvahiLink`."""

    reconciler: Reconciler

    @property
    def kernel_drops(self) -> int:
        """mDNS datagrams the kernel dropped on this namespace's mDNS sockets since the link started."""
        return self.reconciler.drops

    async def _reconcile_loop(self) -> None:
        while self._client is not None:
            await asyncio.sleep(RECONCILE_CHECK)
            if self.reconciler.due(port_drops(MDNS_PORT), time.monotonic()):
                await self.reconcile()

    async def reconcile(self) -> None:
        """Browse every type once more for `RECONCILE_HOLD` seconds (see the module docstring)."""
        client, epoch = self._client, self._epoch
        if client is None or not self._owner:
            return
        specs = [
            ("ServiceBrowserNew", "iissu", (scope.index, scope.protocol, t, "", dbus.UInt32(0)),
             functools.partial(self._on_browse, t))
            for t in self._types
            for scope in self._scopes
        ]  # fmt: skip
        try:
            handles = await client.run(client.new_objects, self._owner, specs)
        except (_Gone, _AvahiError) as exc:
            log.debug("avahi: reconciliation browse refused: %s", exc)
            return
        log.debug("avahi: reconciliation browse of %s", self._types)
        try:
            await asyncio.sleep(RECONCILE_HOLD)
        finally:
            if epoch == self._epoch:  # a new daemon never had these objects
                self._free(handles)
