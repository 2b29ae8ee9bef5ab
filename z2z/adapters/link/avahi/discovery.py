"""The Avahi link's discovery half: browse instances, resolve them from avahi's cache.

Avahi 0.8's ServiceResolver hands TXT strings over D-Bus in reverse wire order
(fixed only in 0.9), gives one address per family and says nothing when TXT
changes.  So each browsed instance gets record browsers for its SRV and TXT and
for the A/AAAA of its host: the raw rdata from avahi's cache, exact bytes in wire
order, every address, and every change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import avahi
import dbus

from z2z.adapters.link.avahi.bus import Handle, _AvahiError, _Gone
from z2z.adapters.link.avahi.names import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_SRV,
    TYPE_TXT,
    escape_label,
    parse_address,
    parse_srv_fields,
)
from z2z.adapters.link.avahi.state import _LinkState
from z2z.adapters.link.base import call_safely, learned_subtypes, service_key, subtypes_by_type
from z2z.adapters.link.net import address_order
from z2z.core.records import Service, parse_txt

log = logging.getLogger(__name__)


class _Watch:
    """Record browsers (one per scope) for one name and type: avahi's cached rdata.

    Items are kept in arrival order, so after a change (the new record arrives
    before the old one is flushed, a second later) `current` is the new one.
    `cached` turns true once every browser has listed what avahi had cached
    (CacheExhausted), so that a host's A and AAAA are reported together rather
    than one family first and the other a moment later.
    """

    def __init__(self, name: str, rtype: int, on_change: Callable[[], None], browsers: int) -> None:
        self.name = name
        self.rtype = rtype
        self.on_change = on_change
        self.handles: list[Handle] = []
        self.items: dict[tuple[int, int, bytes], None] = {}
        self.closed = False
        self._browsers = browsers
        self._exhausted = 0

    @property
    def cached(self) -> bool:
        return self._exhausted >= self._browsers

    def on_signal(self, member: str, args: tuple[Any, ...]) -> None:
        if self.closed:
            return
        if member in ("ItemNew", "ItemRemove"):
            iface, proto, _name, _clazz, _rtype, rdata, _flags = args
            item = (iface, proto, rdata)
            self.items.pop(item, None)
            if member == "ItemNew":
                self.items[item] = None
            self.on_change()
        elif member in ("CacheExhausted", "Failure"):
            if member == "Failure":
                log.warning("avahi: browsing %s (type %d) failed: %s", self.name, self.rtype, args[0])
            self._exhausted += 1
            if self._exhausted == self._browsers:
                self.on_change()

    def current(self) -> bytes | None:
        return next(reversed(self.items))[2] if self.items else None

    def values(self) -> list[bytes]:
        return list(dict.fromkeys(rdata for _, _, rdata in self.items))


@dataclass(eq=False)
class _HostWatch:
    """A and AAAA of one host, shared by every browsed service on it."""

    fqdn: str
    a: _Watch
    aaaa: _Watch
    users: set[tuple[str, str]] = field(default_factory=set)

    def addresses(self) -> tuple[str, ...]:
        found = set()
        for watch in (self.a, self.aaaa):
            for rdata in watch.values():
                with contextlib.suppress(ValueError):
                    found.add(parse_address(watch.rtype, rdata))
        return tuple(sorted(found, key=address_order))


@dataclass(eq=False)
class _Found:
    """One browsed instance: where its PTR is seen, and the watches that resolve it."""

    type: str
    instance: str
    present: set[tuple[int, int]] = field(default_factory=set)
    srv: _Watch | None = None
    txt: _Watch | None = None
    host: str | None = None  # lower-case fqdn of the SRV target, key of `_hosts_seen`


class _Discovery(_LinkState):
    """Browsing and resolving, for `AvahiLink`."""

    async def _start_browsers(self, epoch: int) -> None:
        client = self._require_started()
        specs = [
            ("ServiceBrowserNew", "iissu", (scope.index, scope.protocol, t, "", dbus.UInt32(0)),
             functools.partial(self._on_browse, t))
            for t in self._types
            for scope in self._scopes
        ]  # fmt: skip
        specs += [
            ("ServiceBrowserNew", "iissu",
             (scope.index, scope.protocol, f"{sub}._sub.{t}", "", dbus.UInt32(0)),
             functools.partial(self._on_browse_subtype, t, sub))
            for t in self._types
            for sub in self._subtypes.get(t, ())
            for scope in self._scopes
        ]  # fmt: skip
        handles = await client.run(client.new_objects, self._owner, specs)
        if epoch == self._epoch:
            self._browsers = handles

    async def set_subtypes(self, names: Sequence[str]) -> None:
        """Browse exactly the subtypes `names` from now on (a reload); see `SubtypeBrowsing`.

        New subtypes get ServiceBrowsers at once (their ItemNew signals re-evaluate
        known instances); labels no longer configured are forgotten and their
        browsers ignored until avahi-daemon or z2z restarts.
        """
        client = self._require_started()
        subtypes = subtypes_by_type(names)
        added = [
            (t, sub)
            for t in self._types
            for sub in subtypes.get(t, ())
            if sub not in self._subtypes.get(t, ())
        ]
        self._subtypes = subtypes
        for key, labels in list(self._subtypes_seen.items()):
            dropped = [label for label in labels if label not in subtypes.get(key[0], ())]
            for label in dropped:
                del labels[label]
            if not labels:
                del self._subtypes_seen[key]
            if dropped:
                self._evaluate(key)
        specs = [
            ("ServiceBrowserNew", "iissu",
             (scope.index, scope.protocol, f"{sub}._sub.{t}", "", dbus.UInt32(0)),
             functools.partial(self._on_browse_subtype, t, sub))
            for t, sub in added
            for scope in self._scopes
        ]  # fmt: skip
        if specs and self._owner:
            epoch = self._epoch
            try:
                handles = await client.run(client.new_objects, self._owner, specs)
            except (_Gone, _AvahiError) as exc:  # browsed anew when the daemon is back
                log.warning("avahi: cannot browse the new subtypes now: %s", exc)
                return
            if epoch == self._epoch:
                self._browsers += handles
        log.info("avahi: browsing subtypes %s", sorted(names))

    def _on_browse(self, service_type: str, member: str, args: tuple[Any, ...]) -> None:
        """ServiceBrowser signal (on the loop)."""
        if member == "Failure":
            log.warning("avahi: browsing %s failed: %s", service_type, args[0] if args else "")
            return
        if member not in ("ItemNew", "ItemRemove"):
            return
        iface, proto, name, _type, domain, flags = args
        if domain.lower().rstrip(".") != "local":
            return
        key = service_key(service_type, name)
        if member == "ItemNew":
            if flags & avahi.LOOKUP_RESULT_OUR_OWN or key in self._own:
                return  # one of our proxies (OUR_OWN only covers this connection's groups)
            found = self._found.get(key)
            if found is None:
                # Watches exist before the task that opens them runs, so that an
                # early ItemRemove closes them (and the task frees what it made).
                fqdn = f"{escape_label(name)}.{service_type}.local"
                evaluate = functools.partial(self._evaluate, key)
                n = len(self._scopes)
                srv, txt = _Watch(fqdn, TYPE_SRV, evaluate, n), _Watch(fqdn, TYPE_TXT, evaluate, n)
                found = self._found[key] = _Found(service_type, name, srv=srv, txt=txt)
                self._spawn(self._open_watches([srv, txt], self._epoch), f"z2z-avahi-resolve {name}")
            found.present.add((iface, proto))
            return
        found = self._found.get(key)
        if found is None:
            return
        found.present.discard((iface, proto))
        if found.present:
            return
        del self._found[key]
        self._close_found(found, key)
        self._stale.discard(key)
        gone = self._reported.pop(key, None)
        if gone is not None and self._listener is not None:
            call_safely(self._listener.service_down, gone.type, gone.instance)

    def _on_browse_subtype(self, service_type: str, label: str, member: str, args: tuple[Any, ...]) -> None:
        """A subtype ServiceBrowser signal (on the loop): the instance has this subtype, or not any more.

        avahi cannot list an instance's subtypes; each configured subtype is
        browsed, and where it is seen is kept per (interface, protocol) like PTRs.
        """
        if member not in ("ItemNew", "ItemRemove"):
            if member == "Failure":
                log.warning(
                    "avahi: browsing %s._sub.%s failed: %s", label, service_type, args[0] if args else ""
                )
            return
        iface, proto, name, _type, domain, flags = args
        if domain.lower().rstrip(".") != "local" or label not in self._subtypes.get(service_type, ()):
            return  # another domain, or a subtype no longer configured (a reload dropped it)
        key = service_key(service_type, name)
        if member == "ItemNew" and (flags & avahi.LOOKUP_RESULT_OUR_OWN or key in self._own):
            return
        where = self._subtypes_seen.setdefault(key, {}).setdefault(label, set())
        if member == "ItemNew":
            where.add((iface, proto))
        else:
            where.discard((iface, proto))
            if not where:
                del self._subtypes_seen[key][label]
                if not self._subtypes_seen[key]:
                    del self._subtypes_seen[key]
        self._evaluate(key)

    async def _open_watches(self, watches: list[_Watch], epoch: int) -> None:
        """Record browsers for `watches` on every scope, in one hop to the GLib thread."""
        client = self._client
        if client is None:
            return
        specs = [
            ("RecordBrowserNew", "iisqqu",
             (scope.index, scope.protocol, w.name, CLASS_IN, w.rtype, dbus.UInt32(0)), w.on_signal)
            for w in watches
            for scope in self._scopes
        ]  # fmt: skip
        try:
            handles = await client.run(client.new_objects, self._owner, specs)
        except _Gone:
            return
        except _AvahiError as exc:
            log.warning("avahi: cannot browse records of %s: %s", watches[0].name, exc)
            return
        if epoch != self._epoch:
            return
        per = len(self._scopes)
        for i, watch in enumerate(watches):
            watch.handles = handles[i * per : (i + 1) * per]
        if any(w.closed for w in watches):
            self._free([h for w in watches if w.closed for h in w.handles])

    def _free(self, handles: list[Handle]) -> None:
        client = self._client
        if handles and client is not None:
            self._spawn(client.run(client.free_all, self._owner, handles), "z2z-avahi-free")

    def _close_watch(self, watch: _Watch | None) -> None:
        if watch is not None and not watch.closed:
            watch.closed = True
            self._free(watch.handles)

    def _close_found(self, found: _Found, key: tuple[str, str]) -> None:
        self._close_watch(found.srv)
        self._close_watch(found.txt)
        self._release_host_watch(found.host, key)
        found.host = None

    def _release_host_watch(self, fqdn: str | None, key: tuple[str, str]) -> None:
        host = self._hosts_seen.get(fqdn) if fqdn else None
        if host is None:
            return
        host.users.discard(key)
        if not host.users:
            del self._hosts_seen[host.fqdn]
            self._close_watch(host.a)
            self._close_watch(host.aaaa)

    def _evaluate(self, key: tuple[str, str]) -> None:
        """Something about `key`'s records changed: report the service if it is whole and new."""
        found = self._found.get(key)
        if found is None or found.srv is None or found.txt is None:
            return
        srv = found.srv.current()
        if srv is None:
            return
        try:
            priority, weight, port, labels = parse_srv_fields(srv)
            host_label = labels[0].decode("utf-8")
            fqdn = ".".join(escape_label(lbl.decode("utf-8")) for lbl in labels).lower()
        except (ValueError, UnicodeDecodeError) as exc:
            if self._listener is not None:
                call_safely(self._listener.service_refused, found.instance, f"bad SRV record: {exc}")
            return
        if found.host != fqdn:
            self._release_host_watch(found.host, key)
            found.host = fqdn
            host = self._hosts_seen.get(fqdn)
            if host is None:
                on_change = functools.partial(self._host_changed, fqdn)
                n = len(self._scopes)
                host = _HostWatch(
                    fqdn, _Watch(fqdn, TYPE_A, on_change, n), _Watch(fqdn, TYPE_AAAA, on_change, n)
                )
                self._hosts_seen[fqdn] = host
                self._spawn(self._open_watches([host.a, host.aaaa], self._epoch), f"z2z-avahi-host {fqdn}")
            host.users.add(key)
        txt = found.txt.current()
        host = self._hosts_seen[fqdn]
        if txt is None or not (host.a.cached and host.aaaa.cached):
            return
        addresses = host.addresses()
        if not addresses:
            return
        try:
            subtypes = learned_subtypes(self._subtypes_seen.get(key, {}))
            service = Service(
                found.type, found.instance, host_label, port, parse_txt(txt), addresses, subtypes,
                priority, weight,
            )  # fmt: skip
        except ValueError as exc:
            if self._listener is not None:
                call_safely(self._listener.service_refused, found.instance, str(exc))
            return
        self._stale.discard(key)
        if self._reported.get(key) != service and self._listener is not None:
            self._reported[key] = service
            call_safely(self._listener.service_up, service)

    def _host_changed(self, fqdn: str) -> None:
        host = self._hosts_seen.get(fqdn)
        if host is not None:
            for key in list(host.users):
                self._evaluate(key)
