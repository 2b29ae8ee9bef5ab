"""What the Avahi link's discovery and publishing halves share.

`AvahiLink` is assembled from two halves (`z2z.adapters.link.avahi.discovery`,
`z2z.adapters.link.avahi.publishing`) that work on one set of state: the D-Bus
client, the daemon's bus name and generation (`_epoch`), the scopes, and each
other's registries (a name seen on the link is renamed before probing; our own
proxies are not reported as local services).  This base declares that state and
the helpers both use, so each half type-checks on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from z2z.adapters.link.avahi.bus import Handle, _AvahiClient
from z2z.adapters.link.avahi.names import Scope
from z2z.adapters.link.base import KeyedLocks, LinkError, LinkListener
from z2z.core.records import Service

if TYPE_CHECKING:
    from z2z.adapters.link.avahi.discovery import _Found, _HostWatch
    from z2z.adapters.link.avahi.publishing import _Host, _Published

log = logging.getLogger(__name__)


class _LinkState:
    """State and helpers shared by `AvahiLink`'s halves (set up in `AvahiLink.__init__`)."""

    _scopes: list[Scope]
    _publish_timeout: float
    _away_grace: float
    _client: _AvahiClient | None
    _owner: str  # avahi-daemon's unique bus name, "" while it is away
    _epoch: int  # daemon generation: handles of an older one mean nothing
    _listener: LinkListener | None
    _types: list[str]
    _subtypes: dict[str, tuple[str, ...]]  # bare type -> subtype labels browsed with it
    _browsers: list[Handle]
    # discovery
    _found: dict[tuple[str, str], _Found]
    _hosts_seen: dict[str, _HostWatch]
    _reported: dict[tuple[str, str], Service]
    _stale: set[tuple[str, str]]  # reported before a daemon restart, not seen since
    _subtypes_seen: dict[tuple[str, str], dict[str, set[tuple[int, int]]]]  # key -> label -> scopes
    # publishing
    _published: dict[tuple[str, str], _Published]
    _hosts: dict[str, _Host]
    _own: set[tuple[str, str]]  # (type, instance) keys of names in use here
    _locks: KeyedLocks
    _background: set[asyncio.Task[Any]]

    def _require_started(self) -> _AvahiClient:
        if self._client is None:
            raise LinkError("link not started (or already closed)")
        return self._client

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("avahi: background task %s failed", task.get_name(), exc_info=task.exception())
