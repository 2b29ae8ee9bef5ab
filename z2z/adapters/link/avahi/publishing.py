"""The Avahi link's publishing half: one entry group per proxied service and per proxied host.

One entry group per proxied service (``AddService`` on each chosen interface), and
one per proxied *host* holding its addresses (``AddAddress`` with ``NO_REVERSE``:
the reverse PTR belongs to the real host), shared by all services on that host:
withdrawing one service must not say goodbye for addresses another one still
uses.  Address records skip probing: the host names are ours by construction
(site-suffixed by the core), and a probe would only add a goodbye-then-silence
gap when a host's addresses change.  Services are probed; on ``COLLISION`` they
are renamed with avahi's ``GetAlternativeServiceName`` and added again (a name
already browsed on the link is renamed before probing, as `ZeroconfLink` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import avahi
import dbus

from z2z.adapters.link.avahi.bus import ERR_COLLISION, Handle, _AvahiError, _Gone
from z2z.adapters.link.avahi.names import escape_label
from z2z.adapters.link.avahi.state import _LinkState
from z2z.adapters.link.base import LinkError, service_key
from z2z.adapters.link.net import address_order
from z2z.core.records import RecordError, Service, normalize_type, validate

log = logging.getLogger(__name__)

# entries-per-entry-group-max: each AddService/AddAddress call is one entry.
ENTRIES_PER_GROUP = 32
# publish() waits this long for ESTABLISHED (avahi probes for ~0.75 s).
PUBLISH_TIMEOUT = 10.0
MAX_RENAMES = 20
# A host group that collided is tried again after this long (then twice as long...).
HOST_RETRY = 5.0
HOST_RETRY_MAX = 120.0
FINAL_STATES = (avahi.ENTRY_GROUP_ESTABLISHED, avahi.ENTRY_GROUP_COLLISION, avahi.ENTRY_GROUP_FAILURE)


@dataclass(eq=False)
class _Group:
    """An entry group as the loop sees it: handle, daemon generation, last state.

    `armed` ignores a final state left over from before a Reset: a fresh commit
    always passes through REGISTERING first.
    """

    handle: Handle | None = None
    epoch: int = -1
    state: int | None = None
    armed: bool = False
    waiting: bool = False
    lost: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    on_late_collision: Callable[[], None] | None = None

    def on_signal(self, member: str, args: tuple[Any, ...]) -> None:
        if member != "StateChanged":
            return
        state = int(args[0])
        if state == avahi.ENTRY_GROUP_REGISTERING:
            self.armed = True
        if state in FINAL_STATES and not self.armed:
            return
        self.state = state
        self.changed.set()
        if state == avahi.ENTRY_GROUP_FAILURE:
            log.warning("avahi: entry group %s failed: %s", self.handle, args[1] if len(args) > 1 else "")
        if state == avahi.ENTRY_GROUP_COLLISION and not self.waiting and self.on_late_collision:
            self.on_late_collision()

    def reset(self) -> None:
        self.state, self.armed, self.lost = None, False, False

    def die(self) -> None:
        """Its daemon left: the handle means nothing any more."""
        self.handle, self.state, self.lost = None, None, True
        self.changed.set()

    async def wait_final(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.state not in FINAL_STATES and not self.lost:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return None if self.lost else self.state


@dataclass(eq=False)
class _Published:
    service: Service  # as asked for
    name: str  # instance name in use (differs after a conflict)
    group: _Group


@dataclass(eq=False)
class _Host:
    label: str
    group: _Group
    users: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()  # what the group holds
    retry: float = HOST_RETRY


class _Publishing(_LinkState):
    """Publishing proxies, for `AvahiLink`."""

    async def publish(self, service: Service) -> str:
        """Publish a proxy for `service`; return the instance name in use.

        Waits until avahi has probed the name (ESTABLISHED, ~0.75 s), renaming on
        COLLISION with avahi's ``Name #2`` scheme; a name this link already sees
        on the link (browsed types) is renamed before probing.  Publishing the same key again
        with other data updates it: TXT alone in place (``UpdateServiceTxt``),
        anything else by re-adding the group.  While avahi-daemon is away the
        service is remembered and published when it returns.
        """
        self._require_started()
        try:
            validate(service)
            service_type = normalize_type(service.type)
        except RecordError as exc:
            raise LinkError(f"cannot publish {service.instance!r}: {exc}") from None
        key = service_key(service_type, service.instance)
        async with self._locks.hold(key):
            entry = self._published.get(key)
            if entry is not None and entry.service == service:
                return entry.name
            old = entry.service if entry is not None else None
            if entry is None:
                entry = _Published(service, service.instance, _Group())
                entry.group.on_late_collision = functools.partial(self._late_collision, key, entry)
                self._published[key] = entry
            entry.service = service
            self._own.add(service_key(service_type, entry.name))
            try:
                await self._attach_host(key, service, old)  # addresses live in the host's group
                if (
                    old is not None
                    and (old.host, old.port, old.subtypes) == (service.host, service.port, service.subtypes)
                    and entry.group.state == avahi.ENTRY_GROUP_ESTABLISHED
                    and entry.group.epoch == self._epoch
                ):
                    if old.txt != service.txt:
                        await self._update_txt(entry)
                else:
                    await self._establish(entry)
            except LinkError:
                if old is None:
                    self._published.pop(key, None)
                    self._own.discard(service_key(service_type, entry.name))
                    await self._detach_host(key, service.host)
                raise
            return entry.name

    async def withdraw(self, service_type: str, instance: str) -> None:
        """Free a proxy's entry group (avahi sends the goodbyes); unknown names are ignored."""
        if self._client is None:
            return
        try:
            key = service_key(normalize_type(service_type), instance)
        except RecordError:
            return
        async with self._locks.hold(key):
            entry = self._published.pop(key, None)
            if entry is None:
                return
            self._own.discard(service_key(key[0], entry.name))
            await self._drop_group(entry.group)
            await self._detach_host(key, entry.service.host)

    def _service_entries(self, entry: _Published) -> list[tuple[str, str, tuple[Any, ...]]]:
        """AddService per scope, then AddServiceSubtype per subtype (after AddService, before Commit)."""
        s = entry.service
        service_type = normalize_type(s.type)
        txt = dbus.Array([dbus.ByteArray(t) for t in s.txt], signature="ay")
        room = ENTRIES_PER_GROUP // len(self._scopes) - 1
        if len(s.subtypes) > room:
            log.warning(
                "avahi: %r has %d subtypes; publishing the first %d", entry.name, len(s.subtypes), room
            )
        return [
            ("AddService", "iiussssqaay",
             (scope.index, scope.protocol, dbus.UInt32(0), entry.name, service_type, "",
              f"{escape_label(s.host)}.local", dbus.UInt16(s.port), txt))
            for scope in self._scopes
        ] + [
            ("AddServiceSubtype", "iiusssss",
             (scope.index, scope.protocol, dbus.UInt32(0), entry.name, service_type, "",
              f"{escape_label(sub)}._sub.{service_type}"))
            for scope in self._scopes
            for sub in s.subtypes[:room]
        ]  # fmt: skip

    async def _realize(self, group: _Group, entries: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        """Make the daemon hold `entries` in `group`: rebuild it, or build it anew after a restart."""
        client = self._require_started()
        epoch, owner = self._epoch, self._owner
        if not owner:
            raise _Gone("avahi-daemon is away")
        group.reset()
        if group.handle is not None and group.epoch == epoch:
            await client.run(client.rebuild_group, owner, group.handle, entries)
            return
        handle = await client.run(client.build_group, owner, entries, group.on_signal)
        if epoch == self._epoch:
            group.handle, group.epoch = handle, epoch
        else:
            group.die()

    async def _establish(self, entry: _Published) -> None:
        """Commit the service's group and wait for ESTABLISHED, renaming on collisions."""
        entry.group.waiting = True  # collisions are handled here, not as late ones
        try:
            await self._establish_loop(entry)
        finally:
            entry.group.waiting = False

    async def _establish_loop(self, entry: _Published) -> None:
        try:
            await self._establish_attempts(entry)
        except _Gone:
            log.info("avahi-daemon is away; %r will be published when it returns", entry.name)

    async def _establish_attempts(self, entry: _Published) -> None:
        service = entry.service
        service_type = normalize_type(service.type)
        for _ in range(MAX_RENAMES):
            if service_key(service_type, entry.name) in self._found:
                # Someone on the link has the name already.  avahi's probe would
                # usually find out, but not when our record browsers have just
                # queried that name with known answers: the owner then suppresses
                # its answers to our host (RFC 6762 §7.1) and the probe hears nothing.
                await self._rename(entry)
                continue
            try:
                await self._realize(entry.group, self._service_entries(entry))
            except _AvahiError as exc:
                if exc.name == ERR_COLLISION:  # a local publisher holds the name
                    await self._rename(entry)
                    continue
                raise LinkError(f"avahi refused to publish {entry.name!r}: {exc}") from None
            state = await entry.group.wait_final(self._publish_timeout)
            if state == avahi.ENTRY_GROUP_ESTABLISHED:
                return
            if state == avahi.ENTRY_GROUP_COLLISION:
                await self._rename(entry)
                continue
            if state == avahi.ENTRY_GROUP_FAILURE:
                raise LinkError(f"avahi failed to publish {entry.name!r}")
            if not entry.group.lost:
                log.warning(
                    "avahi: %r not established after %.0f s; leaving it to avahi-daemon",
                    entry.name,
                    self._publish_timeout,
                )
            return
        raise LinkError(f"no free name for {service.instance!r} after {MAX_RENAMES} renames")

    async def _rename(self, entry: _Published) -> None:
        client = self._require_started()
        service_type = normalize_type(entry.service.type)
        try:
            new = str(await client.run(client.server_call, self._owner, "GetAlternativeServiceName", "s",
                                       (entry.name,)))  # fmt: skip
        except _AvahiError as exc:
            raise LinkError(f"cannot rename {entry.name!r}: {exc}") from None
        log.info("avahi: %r is taken on the link; publishing as %r", entry.name, new)
        self._own.discard(service_key(service_type, entry.name))
        entry.name = new
        self._own.add(service_key(service_type, new))

    async def _update_txt(self, entry: _Published) -> None:
        client = self._require_started()
        s = entry.service
        txt = dbus.Array([dbus.ByteArray(t) for t in s.txt], signature="ay")
        handle = entry.group.handle
        assert handle is not None
        for scope in self._scopes:
            args = (scope.index, scope.protocol, dbus.UInt32(0), entry.name, normalize_type(s.type), "", txt)
            try:
                await client.run(
                    client.group_call, self._owner, handle, "UpdateServiceTxt", "iiusssaay", args
                )
            except _Gone:
                return  # republished with the new TXT when the daemon returns
            except _AvahiError as exc:
                raise LinkError(f"avahi refused the new TXT of {entry.name!r}: {exc}") from None

    def _late_collision(self, key: tuple[str, str], entry: _Published) -> None:
        """COLLISION after ESTABLISHED: someone on the link claimed the name; take another."""
        self._spawn(self._recover(key, entry), f"z2z-avahi-collision {entry.name}")

    async def _recover(self, key: tuple[str, str], entry: _Published) -> None:
        async with self._locks.hold(key):
            if self._published.get(key) is not entry or entry.group.state != avahi.ENTRY_GROUP_COLLISION:
                return
            old = entry.name
            try:
                await self._rename(entry)
                await self._establish(entry)
            except _Gone:
                return  # published again, by its current name, when the daemon returns
            except LinkError as exc:
                log.warning("avahi: %r lost its name to a conflict and cannot be republished: %s", old, exc)
                return
            log.warning(
                "avahi: %r (%s) was renamed %r after a conflict on the link",
                old,
                entry.service.type,
                entry.name,
            )

    async def _republish(self, key: tuple[str, str]) -> None:
        async with self._locks.hold(key):
            entry = self._published.get(key)
            if entry is not None and (entry.group.handle is None or entry.group.epoch != self._epoch):
                await self._establish(entry)

    async def _drop_group(self, group: _Group) -> None:
        client = self._client
        handle, group.handle = group.handle, None
        group.die()
        if client is not None and handle is not None and group.epoch == self._epoch:
            with contextlib.suppress(_Gone, _AvahiError):
                await client.run(client.free, self._owner, handle)

    # -- proxied hosts ----------------------------------------------------------

    async def _attach_host(self, key: tuple[str, str], service: Service, old: Service | None) -> None:
        if old is not None and old.host.lower() != service.host.lower():
            await self._detach_host(key, old.host)
        label = service.host.lower()
        async with self._locks.hold(("#host", label)):
            host = self._hosts.get(label)
            if host is None:
                host = self._hosts[label] = _Host(service.host, _Group())
                host.group.on_late_collision = functools.partial(self._host_collision, label)
            host.users[key] = service.addresses
            await self._sync_host(host)

    async def _detach_host(self, key: tuple[str, str], host_label: str) -> None:
        label = host_label.lower()
        async with self._locks.hold(("#host", label)):
            host = self._hosts.get(label)
            if host is None or host.users.pop(key, None) is None:
                return
            if host.users:
                await self._sync_host(host)
            else:
                del self._hosts[label]
                await self._drop_group(host.group)

    async def _refresh_host(self, label: str) -> None:
        """After a daemon restart: publish the host's addresses again."""
        async with self._locks.hold(("#host", label)):
            host = self._hosts.get(label)
            if host is not None:
                host.addresses = ()
                await self._sync_host(host)

    async def _sync_host(self, host: _Host) -> None:
        """Make the host's group hold the union of its services' addresses (caller holds its lock)."""
        wanted = tuple(sorted({a for addrs in host.users.values() for a in addrs}, key=address_order))
        room = ENTRIES_PER_GROUP // len(self._scopes)
        if len(wanted) > room:
            log.warning(
                "avahi: host %s has %d addresses; publishing the first %d", host.label, len(wanted), room
            )
            wanted = wanted[:room]
        live = host.group.handle is not None and host.group.epoch == self._epoch
        if wanted == host.addresses and live:
            return
        if not wanted:
            host.addresses = ()
            await self._drop_group(host.group)
            return
        fqdn = f"{escape_label(host.label)}.local"
        flags = dbus.UInt32(avahi.PUBLISH_NO_REVERSE | avahi.PUBLISH_NO_PROBE)
        entries = [
            ("AddAddress", "iiuss", (scope.index, scope.protocol, flags, fqdn, address))
            for scope in self._scopes
            for address in wanted
        ]
        try:
            await self._realize(host.group, entries)
        except _Gone:
            return
        except _AvahiError as exc:
            raise LinkError(f"avahi refused the addresses of {host.label!r}: {exc}") from None
        host.addresses = wanted

    def _host_collision(self, label: str) -> None:
        host = self._hosts.get(label)
        if host is None:
            return
        log.warning(
            "avahi: another responder claims host %s.local with other addresses; retrying in %.0f s",
            host.label,
            host.retry,
        )
        self._spawn(self._host_retry(label, host), f"z2z-avahi-host-retry {label}")

    async def _host_retry(self, label: str, host: _Host) -> None:
        await asyncio.sleep(host.retry)
        host.retry = min(host.retry * 2, HOST_RETRY_MAX)
        async with self._locks.hold(("#host", label)):
            if self._hosts.get(label) is host and host.group.state == avahi.ENTRY_GROUP_COLLISION:
                host.addresses = ()
                host.group.handle, handle = None, host.group.handle
                if handle is not None:
                    client = self._require_started()
                    with contextlib.suppress(_Gone, _AvahiError):
                        await client.run(client.free, self._owner, handle)
                await self._sync_host(host)
