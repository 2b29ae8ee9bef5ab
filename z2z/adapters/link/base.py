"""The link side of the gateway: what any mDNS backend must offer.

Backends (python-zeroconf, Avahi over D-Bus) browse and resolve the bridged
service types and publish proxied services for hosts on other subnets.  They turn
link traffic into calls on a `LinkListener` and never decide anything themselves:
the decisions live in the pure core (`z2z.core.bridge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from z2z.core.errors import Z2zError
from z2z.core.records import MAX_SUBTYPES, RecordError, Service, check_subtype, parse_subtype, subtype_set

log = logging.getLogger(__name__)


class LinkError(Z2zError, RuntimeError):
    """The link backend cannot do what was asked (no such interface, daemon gone...)."""

    default_reason = "link"


class LinkListener(Protocol):
    """Receives what the backend sees on the link. Called on the event loop thread."""

    def service_up(self, service: Service) -> None:
        """A service of a browsed type was resolved, or its records changed."""

    def service_down(self, service_type: str, instance: str) -> None:
        """A service said goodbye or its records expired."""

    def service_refused(self, name: str, reason: str) -> None:
        """The link announced something the backend cannot carry (a hostile or broken name)."""


class LinkBackend(Protocol):
    """Browse, resolve, publish and withdraw DNS-SD services on one or more links.

    Services handed to `publish` carry a bare host label (``printer-campus-a-z2z``);
    the backend adds ``.local.``.  Everything is asyncio and must be called from the
    loop that ran `start`.
    """

    async def start(self, types: Sequence[str], listener: LinkListener) -> None:
        """Open the link(s) and start browsing `types` (bare, e.g. ``_ipp._tcp``)."""

    async def publish(self, service: Service) -> str:
        """Announce `service` (a proxy for a remote host); return the instance name used.

        The name differs from ``service.instance`` only when the backend had to
        rename it after a conflict on the link.
        """

    async def withdraw(self, service_type: str, instance: str) -> None:
        """Send goodbyes for a service published here; unknown names are ignored."""

    async def close(self) -> None:
        """Withdraw everything published and release the link."""


@runtime_checkable
class DynamicBrowsing(Protocol):
    """Optional: backends that can browse types found at run time (``type = ["*"]``, reloads)."""

    async def browse(self, types: Sequence[str]) -> None:
        """Also browse `types` from now on (already browsed ones are ignored)."""

    async def discover_types(self, on_type: Callable[[str], None]) -> None:
        """Report every service type seen on the link (``_services._dns-sd._udp`` PTRs), now and later."""


@runtime_checkable
class SubtypeBrowsing(Protocol):
    """Optional: backends whose browsed subtypes can change at run time (a reload of ``subtypes``)."""

    async def set_subtypes(self, names: Sequence[str]) -> None:
        """Browse exactly `names` (``_universal._sub._ipp._tcp``...) from now on, for the browsed types.

        Instances already known get newly browsed subtypes as the link answers; labels
        no longer configured stop counting where the backend learns only what it browses.
        Raises LinkError for a bad name (nothing changes then).
        """


async def reload_subtypes(link: object, names: Sequence[str]) -> None:
    """Apply a reloaded ``subtypes`` setting to `link`; a backend that cannot says so once."""
    if not isinstance(link, SubtypeBrowsing):
        log.warning("config: subtypes changed; this link backend needs a restart to browse them")
        return
    try:
        await link.set_subtypes(names)
    except LinkError as exc:
        log.warning("config: subtypes not applied: %s", exc)


class KeyedLocks:
    """One asyncio lock per key, made on first use and dropped when nobody holds or waits.

    Backends serialise publish/withdraw (and recovery) per service with it, so
    probing never races an update of the same service while others go on.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


def service_key(service_type: str, instance: str) -> tuple[str, str]:
    """DNS names compare case-insensitively, so the backends' registries do too."""
    return (service_type.lower(), instance.lower())


def call_safely(callback: Callable[..., None], *args: object) -> None:
    """Call a listener; its bugs are logged, never thrown into the link library."""
    try:
        callback(*args)
    except Exception:
        log.exception("link listener failed in %r", callback)


def subtypes_by_type(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["_universal._sub._ipp._tcp", ...]`` → ``{"_ipp._tcp": ("_universal", ...)}``; LinkError if bad."""
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        try:
            label, service_type = parse_subtype(name)
        except RecordError as exc:
            raise LinkError(str(exc)) from None
        out[service_type] = (*out.get(service_type, ()), label)
    return out


def learned_subtypes(labels: Iterable[str]) -> tuple[str, ...]:
    """Subtype labels seen on the link, fit to carry: bad labels dropped, at most `MAX_SUBTYPES`.

    A device's odd subtype must not cost it the whole service (which `validate`
    would refuse), so what cannot be carried is left out here, with a debug line.
    """
    good = []
    for label in labels:
        try:
            good.append(check_subtype(label))
        except RecordError as exc:
            log.debug("ignoring a subtype seen on the link: %s", exc)
    out = subtype_set(good)
    if len(out) > MAX_SUBTYPES:
        log.debug("keeping %d of %d subtypes: %s", MAX_SUBTYPES, len(out), out)
    return out[:MAX_SUBTYPES]
