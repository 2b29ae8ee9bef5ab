"""`AvahiLink`: the Avahi link backend, assembled; its lifecycle and avahi-daemon restarts.

The daemon's unique bus name is watched.  Calls go to that unique name, so
nothing meant for a dead daemon can land on its successor; when a new daemon
appears, browsers are re-created and every host and service is published again.
Services seen before are reported again only if they changed, and reported gone
only if the new daemon does not see them (or if no daemon comes back within
`AWAY_GRACE`).  A gateway crash needs no such care: avahi-daemon frees a
vanished client's groups and sends the goodbyes, so avahi's default TTLs are
kept (`ZeroconfLink` must shorten its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from z2z.adapters.link.avahi.bus import (
    OBJECTS_PER_CONNECTION,
    _AvahiClient,
    _AvahiError,
    _GLibThread,
    _Gone,
)
from z2z.adapters.link.avahi.names import Scope, select_scopes
from z2z.adapters.link.avahi.publishing import PUBLISH_TIMEOUT, _Publishing
from z2z.adapters.link.avahi.reconcile import _Reconcile, avahi_reconciler
from z2z.adapters.link.base import KeyedLocks, LinkError, LinkListener, call_safely, subtypes_by_type
from z2z.core.records import RecordError, normalize_type

log = logging.getLogger(__name__)

# After avahi-daemon came back: services not seen again within this time are gone.
# Browsers answer from the cache at once and say AllForNow after one second.
STALE_GRACE = 5.0
# While avahi-daemon is away the link is blind; after this long, the services it
# had reported are reported gone (and reported again once a daemon sees them).
AWAY_GRACE = 60.0


class AvahiLink(_Reconcile, _Publishing):
    """A `LinkBackend` on avahi-daemon's D-Bus API (see the module docstring).

    `interfaces` are names (``lan0``) or addresses, as for `ZeroconfLink`; empty
    means every interface avahi-daemon serves.  `subtypes` (``_universal._sub._ipp._tcp``
    ...) are browsed with their types so that each instance's subtypes are learned.
    The daemon is found on the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` is honoured).
    """

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        publish_timeout: float = PUBLISH_TIMEOUT,
        objects_per_connection: int = OBJECTS_PER_CONNECTION,
        away_grace: float = AWAY_GRACE,
        subtypes: Sequence[str] = (),
    ) -> None:
        self._scopes = select_scopes(tuple(interfaces))
        self._subtypes = subtypes_by_type(subtypes)
        self._publish_timeout = publish_timeout
        self._away_grace = away_grace
        self._objects_per_connection = objects_per_connection
        self._glib: _GLibThread | None = None
        self._client = None
        self._owner = ""
        self._epoch = 0
        self._version = ""
        self._listener = None
        self._types = []
        self._browsers = []
        # discovery
        self._found = {}
        self._hosts_seen = {}
        self._reported = {}
        self._stale = set()  # reported before a daemon restart, not seen since
        self._subtypes_seen = {}
        # publishing
        self._published = {}
        self._hosts = {}
        self._own = set()  # (type, instance) keys of names in use here
        self._locks = KeyedLocks()
        self._background = set()
        self.reconciler = avahi_reconciler()  # kernel drops on the mDNS sockets (.reconcile)

    # -- introspection (tests, status) ---------------------------------------

    @property
    def scopes(self) -> list[Scope]:
        return list(self._scopes)

    @property
    def connections(self) -> int:
        """D-Bus connections in the pool (objects-per-client-max forces more than one)."""
        return len(self._client.conns) if self._client else 0

    @property
    def daemon(self) -> str:
        """avahi-daemon's unique bus name, "" while it is away."""
        return self._owner

    # -- lifecycle -----------------------------------------------------------

    async def start(self, types: Sequence[str], listener: LinkListener) -> None:
        """Connect to avahi-daemon, check it serves our interfaces, browse `types`."""
        if self._client is not None:
            raise LinkError("link already started")
        try:
            self._types = list(dict.fromkeys(normalize_type(t) for t in types))
        except RecordError as exc:
            raise LinkError(str(exc)) from None
        self._listener = listener
        glib = _GLibThread.acquire()
        client = _AvahiClient(glib, asyncio.get_running_loop(), self._on_owner, self._objects_per_connection)
        try:
            self._owner, self._version = await client.run(client.open)
            for scope in self._scopes:
                if (
                    scope.name
                    and await client.run(client.interface_index, self._owner, scope.name) != scope.index
                ):
                    raise LinkError(
                        f"avahi-daemon does not see interface {scope.name} (index {scope.index}) as this"
                        " process does: is it running in another network namespace?"
                    )
        except BaseException:
            with contextlib.suppress(Exception):
                await client.run(client.close)
            _GLibThread.release()
            raise
        self._glib, self._client = glib, client
        try:
            await self._start_browsers(self._epoch)
        except (_Gone, _AvahiError) as exc:
            await self.close()
            raise LinkError(f"avahi-daemon refused to browse: {exc}") from None
        self._spawn(self._reconcile_loop(), "z2z-avahi-reconcile")
        log.info(
            "avahi link up (%s, daemon %s) on %s, browsing %s",
            self._version,
            self._owner,
            ", ".join(map(str, self._scopes)),
            self._types,
        )

    async def close(self) -> None:
        """Close the D-Bus connections: avahi-daemon frees every group, with goodbyes."""
        client, self._client = self._client, None
        if client is None:
            return
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await client.run(client.close)
        _GLibThread.release()
        self._glib = None
        self._owner = ""
        for state in (
            self._found,
            self._hosts_seen,
            self._subtypes_seen,
            self._reported,
            self._published,
            self._hosts,
        ):
            state.clear()
        self._stale.clear()
        self._own.clear()
        self._browsers.clear()

    # -- the daemon coming and going -------------------------------------------

    def _on_owner(self, owner: str) -> None:
        """avahi-daemon's bus name changed hands (on the loop, from the GLib thread)."""
        if self._client is None or owner == self._owner:
            return
        if self._owner:
            self._daemon_lost()
        self._owner = owner
        if owner:
            self._spawn(self._daemon_back(self._epoch), "z2z-avahi-back")

    def _daemon_lost(self) -> None:
        """Forget every D-Bus object, keep what should exist; nothing is reported gone yet."""
        self._epoch += 1
        log.warning(
            "avahi-daemon left the bus; keeping %d publications and %d services until it returns",
            len(self._published),
            len(self._reported),
        )
        for found in self._found.values():
            for watch in (found.srv, found.txt):
                if watch is not None:
                    watch.closed = True
        self._found.clear()
        self._hosts_seen.clear()
        self._subtypes_seen.clear()
        self._browsers.clear()
        self._stale |= set(self._reported)
        for entry in self._published.values():
            entry.group.die()
        for host in self._hosts.values():
            host.group.die()
        self._spawn(self._away(self._epoch), "z2z-avahi-away")

    async def _away(self, epoch: int) -> None:
        await asyncio.sleep(self._away_grace)
        if epoch != self._epoch or self._owner:
            return
        log.warning("avahi-daemon still away after %.0f s: reporting %d services gone",
                    self._away_grace, len(self._reported))  # fmt: skip
        self._stale.clear()
        for key in list(self._reported):
            gone = self._reported.pop(key)
            if self._listener is not None:
                call_safely(self._listener.service_down, gone.type, gone.instance)

    async def _daemon_back(self, epoch: int) -> None:
        """A new avahi-daemon: browse again, publish everything again."""
        t0 = time.monotonic()
        log.info(
            "avahi-daemon is back (%s): re-creating browsers, re-publishing %d services on %d hosts",
            self._owner,
            len(self._published),
            len(self._hosts),
        )
        try:
            await self._start_browsers(epoch)
        except (_Gone, _AvahiError) as exc:
            log.warning("avahi: browsing again failed: %s", exc)
        if epoch != self._epoch:
            return
        self._spawn(self._expire_stale(epoch), "z2z-avahi-stale")
        hosts = await asyncio.gather(
            *(self._refresh_host(label) for label in list(self._hosts)), return_exceptions=True
        )
        results = await asyncio.gather(
            *(self._republish(key) for key in list(self._published)), return_exceptions=True
        )
        for result in (*hosts, *results):
            if isinstance(result, BaseException):
                log.warning("avahi: re-publishing failed: %r", result)
        if epoch == self._epoch:
            log.info("avahi: re-published %d services in %.2f s", len(self._published), time.monotonic() - t0)

    async def _expire_stale(self, epoch: int) -> None:
        await asyncio.sleep(STALE_GRACE)
        if epoch != self._epoch:
            return
        for key in list(self._stale):
            if key in self._found:
                continue  # its PTR is back; resolution reports it if it changed
            gone = self._reported.pop(key, None)
            if gone is not None and self._listener is not None:
                call_safely(self._listener.service_down, gone.type, gone.instance)
        self._stale.clear()
