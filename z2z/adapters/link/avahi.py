"""The Avahi link backend: browse, resolve and publish proxies through avahi-daemon.

On Raspberry Pi OS and Debian, avahi-daemon owns mDNS on the link; a second
responder beside it works (see `z2z.adapters.link.zeroconf`) but every host name, probe and
conflict is then handled twice.  `AvahiLink` asks the daemon instead, over its
D-Bus API, with python-avahi (Debian's ``python3-avahi``, the ``avahi`` module:
constants and interface names) and dbus-python.  Like `ZeroconfLink` it only
translates: what to bridge is decided in the core.

How it is built, and why:

* **Threads.**  dbus-python delivers signals through a GLib main loop, and its
  objects are not meant to be shared between threads.  One daemon thread runs
  GLib's default main context (`_GLibThread`); every D-Bus call and every signal
  handler runs there.  The gateway's asyncio loop submits work with
  ``GLib.idle_add`` and awaits it as a future; signals come back with
  ``call_soon_threadsafe``.  Calls are *blocking* inside that thread: they stay
  in order, and a connection never has more than one reply pending (the system
  bus allows 128).
* **Connections.**  avahi-daemon counts objects (entry groups, browsers) per D-Bus
  client, at most ``objects-per-client-max`` = 1024 by default.  `_AvahiClient`
  keeps a pool of private system-bus connections and opens another when the
  current ones are full (or avahi says ``TooManyObjects`` earlier), so 2,000
  proxied services are no problem.
* **Resolution.**  Avahi 0.8's ServiceResolver hands TXT strings over D-Bus in
  reverse wire order (fixed only in 0.9), gives one address per family and says
  nothing when TXT changes.  So each browsed instance gets record browsers for
  its SRV and TXT and for the A/AAAA of its host: the raw rdata from avahi's
  cache, exact bytes in wire order, every address, and every change.
* **Publishing.**  One entry group per proxied service (``AddService`` on each
  chosen interface), and one per proxied *host* holding its addresses
  (``AddAddress`` with ``NO_REVERSE``: the reverse PTR belongs to the real host),
  shared by all services on that host: withdrawing one service must not say
  goodbye for addresses another one still uses.  Address records skip probing:
  the host names are ours by construction (site-suffixed by the core), and a
  probe would only add a goodbye-then-silence gap when a host's addresses change.
  Services are probed; on ``COLLISION`` they are renamed with avahi's
  ``GetAlternativeServiceName`` and added again (a name already browsed on the
  link is renamed before probing, as `ZeroconfLink` does).
* **Restarts.**  The daemon's unique bus name is watched.  Calls go to that
  unique name, so nothing meant for a dead daemon can land on its successor;
  when a new daemon appears, browsers are re-created and every host and service
  is published again.  Services seen before are reported again only if they
  changed, and reported gone only if the new daemon does not see them (or if
  no daemon comes back within `AWAY_GRACE`).  A gateway crash needs no such
  care: avahi-daemon frees a vanished client's groups and sends the goodbyes,
  so avahi's default TTLs are kept (`ZeroconfLink` must shorten its own).
* **Costs.**  avahi-daemon answers each probe's ANY question by scanning all its
  entries, so registering N services costs it O(N²) CPU: 2,000 at once take
  ~15-25 s of daemon CPU on a 2-core test machine.  Nothing in the D-Bus API
  avoids that short of skipping the probe (AddRecord with NO_PROBE).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import avahi
import dbus
import dbus.mainloop.glib
import ifaddr
from dnslib import SRV, DNSBuffer, DNSError
from gi.repository import GLib

from z2z.adapters.link.base import KeyedLocks, LinkError, LinkListener
from z2z.adapters.link.zeroconf import parse_txt
from z2z.core.records import RecordError, Service, normalize_type, validate

__all__ = ["AvahiLink", "Scope", "escape_label", "parse_address", "parse_srv", "probe_avahi", "select_scopes"]

log = logging.getLogger(__name__)

# avahi-daemon's default objects-per-client-max is 1024; stay a little below it so
# that a few objects made outside the pool's count (none today) cannot hit it.
OBJECTS_PER_CONNECTION = 1000
# Beyond this many connections something is wrong (the system bus allows 256 per user).
MAX_CONNECTIONS = 64
# entries-per-entry-group-max: each AddService/AddAddress call is one entry.
ENTRIES_PER_GROUP = 32
# One blocking D-Bus call never waits longer than this.
CALL_TIMEOUT = 10.0
# publish() waits this long for ESTABLISHED (avahi probes for ~0.75 s).
PUBLISH_TIMEOUT = 10.0
MAX_RENAMES = 20
# After avahi-daemon came back: services not seen again within this time are gone.
# Browsers answer from the cache at once and say AllForNow after one second.
STALE_GRACE = 5.0
# While avahi-daemon is away the link is blind; after this long, the services it
# had reported are reported gone (and reported again once a daemon sees them).
AWAY_GRACE = 60.0
# A host group that collided is tried again after this long (then twice as long...).
HOST_RETRY = 5.0
HOST_RETRY_MAX = 120.0

CLASS_IN = 1
TYPE_A, TYPE_TXT, TYPE_SRV, TYPE_AAAA = 1, 16, 33, 28
FINAL_STATES = (avahi.ENTRY_GROUP_ESTABLISHED, avahi.ENTRY_GROUP_COLLISION, avahi.ENTRY_GROUP_FAILURE)

_ERR = "org.freedesktop.Avahi."
ERR_TOO_MANY_OBJECTS = _ERR + "TooManyObjectsError"
ERR_COLLISION = _ERR + "CollisionError"
_GONE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
}
_DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")

Handle = tuple[int, str]  # (connection number in the pool, object path)
Sink = Callable[[str, tuple[Any, ...]], None]  # (signal member, arguments), on the asyncio loop


# ---------------------------------------------------------------------------
# pure helpers (tested without D-Bus)


def escape_label(label: str) -> str:
    """One DNS label in avahi's textual form (``avahi_escape_label``).

    Dots and backslashes get a backslash, letters, digits, ``-`` and ``_`` stay,
    every other byte becomes ``\\DDD``, so instance names with dots or spaces
    survive the trip into a RecordBrowser name.
    """
    out: list[str] = []
    for byte in label.encode("utf-8"):
        char = chr(byte)
        if char in ".\\":
            out.append("\\" + char)
        elif char.isascii() and (char.isalnum() or char in "-_"):
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def parse_srv(rdata: bytes) -> tuple[int, list[bytes]]:
    """SRV rdata (as avahi serialises it: names uncompressed) → (port, target labels)."""
    try:
        srv = SRV.parse(DNSBuffer(rdata), len(rdata))
    except (DNSError, IndexError, ValueError) as exc:
        raise ValueError(f"malformed SRV rdata: {exc}") from None
    labels = [bytes(lbl) for lbl in srv.target.label]
    if not labels or not labels[0]:
        raise ValueError("SRV target is the root")
    return int(srv.port), labels


def parse_address(rtype: int, rdata: bytes) -> str:
    """A or AAAA rdata → textual address; ValueError for anything else."""
    if rtype == TYPE_A and len(rdata) == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == TYPE_AAAA and len(rdata) == 16:
        return str(ipaddress.IPv6Address(rdata))
    raise ValueError(f"bad address rdata for type {rtype}: {rdata!r}")


def _address_order(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    return (ip.version, ip.packed)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where avahi browses and publishes: interface index and IP protocol, avahi's numbers.

    ``Scope(avahi.IF_UNSPEC, avahi.PROTO_UNSPEC)`` means every interface avahi-daemon
    serves (its own ``allow-interfaces``).  `name` is the interface name, checked
    against the daemon's view at start (a daemon in another network namespace has
    other interfaces, or the same names with other indexes).
    """

    index: int
    protocol: int
    name: str = ""

    def __str__(self) -> str:
        proto = {avahi.PROTO_INET: "/IPv4", avahi.PROTO_INET6: "/IPv6"}.get(self.protocol, "")
        return f"{self.name or 'all'}{proto}"


def _parse_ip(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(entry.split("%", 1)[0])
    except ValueError:
        return None


def _adapter_ips(adapter: ifaddr.Adapter) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for ip in adapter.ips:
        raw = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
        out.append(ipaddress.ip_address(raw.split("%", 1)[0]))
    return out


def select_scopes(interfaces: Sequence[str], adapters: Sequence[ifaddr.Adapter] | None = None) -> list[Scope]:
    """Map interface names or addresses to avahi scopes, one per interface.

    A name means both IP protocols on that interface; an address means its family
    only (both, if addresses of both families name the same interface), as with
    `ZeroconfLink`.  Empty `interfaces` means whatever avahi-daemon serves.
    Raises LinkError for a name or address no interface has.
    """
    if not interfaces:
        return [Scope(avahi.IF_UNSPEC, avahi.PROTO_UNSPEC)]
    adapters = list(ifaddr.get_adapters() if adapters is None else adapters)
    by_name = {a.name: a for a in adapters}
    available = ", ".join(sorted(by_name)) or "none"
    families: dict[int, set[int]] = {}
    names: dict[int, str] = {}
    for raw in interfaces:
        entry = raw.strip()
        wanted = _parse_ip(entry)
        if wanted is None:
            adapter = by_name.get(entry)
            if adapter is None:
                raise LinkError(f"no such interface: {entry} (available: {available})")
            versions = {4, 6}
        else:
            scope = entry.split("%", 1)[1] if "%" in entry else None
            owners = [
                a for a in adapters
                if wanted in _adapter_ips(a) and scope in (None, a.name, str(a.index))
            ]  # fmt: skip
            if not owners:
                raise LinkError(f"no interface has address {entry} (available: {available})")
            adapter, versions = owners[0], {wanted.version}
        if adapter.index is None:
            raise LinkError(f"interface {adapter.name} has no index")
        families.setdefault(int(adapter.index), set()).update(versions)
        names[int(adapter.index)] = adapter.name
    protocol = {
        frozenset({4}): avahi.PROTO_INET,
        frozenset({6}): avahi.PROTO_INET6,
        frozenset({4, 6}): avahi.PROTO_UNSPEC,
    }
    return [Scope(index, protocol[frozenset(v)], names[index]) for index, v in families.items()]


# ---------------------------------------------------------------------------
# the GLib thread and the D-Bus side


class _GLibThread:
    """GLib's default main context, run by one daemon thread for the whole process.

    dbus-python's GLib integration always uses the *default* context, so there can
    be only one such thread; links share it and the last one to leave stops it.
    """

    _lock = threading.Lock()
    _current: _GLibThread | None = None
    _users = 0

    @classmethod
    def acquire(cls) -> _GLibThread:
        with cls._lock:
            if cls._current is None:
                cls._current = cls()
            cls._users += 1
            return cls._current

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._current is not None:
                cls._current._stop()
                cls._current = None

    def __init__(self) -> None:
        dbus.mainloop.glib.threads_init()
        self.dbus_mainloop = dbus.mainloop.glib.DBusGMainLoop(set_as_default=False)
        self._loop = GLib.MainLoop()
        started = threading.Event()

        def ready() -> bool:
            started.set()
            return False

        GLib.idle_add(ready)
        self._thread = threading.Thread(target=self._loop.run, name="z2z-avahi-glib", daemon=True)
        self._thread.start()
        started.wait(5)

    def _stop(self) -> None:
        self._loop.quit()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the GLib thread, after any signals already waiting."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> bool:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            return False  # one shot

        GLib.idle_add(run, priority=GLib.PRIORITY_DEFAULT_IDLE)
        return future


class _Gone(Exception):
    """avahi-daemon left the bus (or the call was meant for one that has left)."""


class _AvahiError(Exception):
    """avahi-daemon refused a call; `name` is the D-Bus error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(eq=False)
class _Conn:
    bus: Any
    objects: int = 0
    limit: int = OBJECTS_PER_CONNECTION
    dead: bool = False


def _plain(value: Any) -> Any:
    """dbus-python values as plain Python ones, before they cross to the asyncio thread."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _AvahiClient:
    """Everything that touches dbus-python.  Methods marked (GLib) run on the GLib thread.

    The asyncio side awaits them with `run`; the only state shared with it is what
    travels through those calls and through `post`.
    """

    def __init__(
        self,
        glib: _GLibThread,
        loop: asyncio.AbstractEventLoop,
        on_owner: Callable[[str], None],
        objects_per_connection: int,
    ) -> None:
        self._glib = glib
        self._loop = loop
        self._on_owner = on_owner
        self._per_conn = objects_per_connection
        self.conns: list[_Conn] = []
        self.routes: dict[str, Sink] = {}  # object path -> where its signals go
        self.owner = ""  # avahi-daemon's unique bus name, "" while it is away
        self._watch: Any = None
        self.closed = False

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self._glib.submit(fn, *args))

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Hand a call to the asyncio loop (from the GLib thread)."""
        with contextlib.suppress(RuntimeError):  # loop closed: nobody listens any more
            self._loop.call_soon_threadsafe(fn, *args)

    # -- connections (GLib) ----------------------------------------------------

    def _connect(self) -> _Conn:
        if len(self.conns) >= MAX_CONNECTIONS:
            raise LinkError(f"avahi: {MAX_CONNECTIONS} D-Bus connections in use, no room for more objects")
        try:
            bus = dbus.SystemBus(private=True, mainloop=self._glib.dbus_mainloop)
        except dbus.exceptions.DBusException as exc:
            raise LinkError(f"cannot connect to the D-Bus system bus: {exc}") from None
        bus.set_exit_on_disconnect(False)  # libdbus would _exit() the gateway otherwise
        for interface in (
            avahi.DBUS_INTERFACE_ENTRY_GROUP,
            avahi.DBUS_INTERFACE_SERVICE_BROWSER,
            avahi.DBUS_INTERFACE_RECORD_BROWSER,
        ):
            bus.add_signal_receiver(
                self._on_signal,
                dbus_interface=interface,
                path_keyword="path",
                member_keyword="member",
                byte_arrays=True,
            )
        bus.add_signal_receiver(
            functools.partial(self._on_disconnected, len(self.conns)),
            "Disconnected",
            "org.freedesktop.DBus.Local",
        )
        conn = _Conn(bus, limit=self._per_conn)
        self.conns.append(conn)
        log.debug("avahi: D-Bus connection %d is %s", len(self.conns) - 1, bus.get_unique_name())
        return conn

    def open(self) -> tuple[str, str]:
        """(GLib) First connection; returns (daemon's unique name, version string)."""
        bus = self._connect().bus
        try:
            reply = bus.call_blocking(*_DBUS, "GetNameOwner", "s", (avahi.DBUS_NAME,), timeout=CALL_TIMEOUT)
        except dbus.exceptions.DBusException:
            raise LinkError(
                f"avahi-daemon is not running ({avahi.DBUS_NAME} is not on the D-Bus system bus);"
                " start it, or use the python-zeroconf backend (--mdns zeroconf)"
            ) from None
        self.owner = owner = str(reply)
        version = str(self.server_call(owner, "GetVersionString", "", ()))
        self._watch = bus.watch_name_owner(avahi.DBUS_NAME, self._owner_changed)
        return owner, version

    def close(self) -> None:
        """(GLib) Close every connection: avahi-daemon frees the objects, with goodbyes."""
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        self.routes.clear()
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.bus.close()
        self.conns.clear()

    def _owner_changed(self, owner: str) -> None:
        owner = str(owner)
        if owner == self.owner or self.closed:
            return
        # Whatever the old daemon had is gone with it: no routes, no objects.
        self.owner = owner
        self.routes.clear()
        for conn in self.conns:
            conn.objects, conn.limit = 0, self._per_conn
        self.post(self._on_owner, owner)

    def _on_disconnected(self, number: int, *args: Any) -> None:
        if self.closed:
            return
        self.conns[number].dead = True
        if number == 0:  # the one that watches the daemon: nothing more can be known
            log.error("avahi: lost the D-Bus system bus; the Avahi link is down")
            self._owner_changed("")
            return
        # Its objects are gone with it: start over on the living connections, as
        # after a daemon restart.
        log.warning("avahi: D-Bus connection %d was closed by the bus; re-creating its objects", number)
        owner = self.owner
        self._owner_changed("")
        self._owner_changed(owner)

    def _on_signal(self, *args: Any, path: str = "", member: str = "") -> None:
        sink = self.routes.get(str(path))
        if sink is not None:
            self.post(sink, str(member), tuple(_plain(a) for a in args))

    # -- calls (GLib) --------------------------------------------------------

    def _error(self, exc: dbus.exceptions.DBusException, owner: str) -> Exception:
        name = exc.get_dbus_name() or ""
        if name in _GONE or owner != self.owner:
            return _Gone(str(exc))
        if name == "org.freedesktop.DBus.Error.NoReply":
            # The daemon may have died while we waited; a hung one is a real error.
            with contextlib.suppress(dbus.exceptions.DBusException):
                if not self.conns[0].bus.call_blocking(*_DBUS, "NameHasOwner", "s", (owner,)):
                    return _Gone(str(exc))
        return _AvahiError(name, exc.get_dbus_message() or str(exc))

    def _call(self, conn: _Conn, owner: str, path: str, interface: str, method: str,
              signature: str, args: tuple[Any, ...]) -> Any:  # fmt: skip
        if not owner or owner != self.owner:
            raise _Gone("avahi-daemon is not on the bus")
        try:
            return conn.bus.call_blocking(owner, path, interface, method, signature, args,
                                          timeout=CALL_TIMEOUT, byte_arrays=True)  # fmt: skip
        except dbus.exceptions.DBusException as exc:
            raise self._error(exc, owner) from None

    def server_call(self, owner: str, method: str, signature: str, args: tuple[Any, ...]) -> Any:
        """(GLib) A method of avahi's Server object."""
        if not self.conns or self.conns[0].dead:
            raise _Gone("no bus")
        conn = self.conns[0]
        return _plain(self._call(conn, owner, "/", avahi.DBUS_INTERFACE_SERVER, method, signature, args))

    def _room(self) -> tuple[int, _Conn]:
        for number, conn in enumerate(self.conns):
            if conn.objects < conn.limit and not conn.dead:
                return number, conn
        conn = self._connect()
        return len(self.conns) - 1, conn

    def new_object(
        self, owner: str, method: str, signature: str, args: tuple[Any, ...], sink: Sink
    ) -> Handle:
        """(GLib) Create a browser or entry group on a connection with room; route its signals.

        The route is set here, before the GLib loop can dispatch any signal of the
        new object, so none is lost.
        """
        while True:
            number, conn = self._room()
            try:
                path = str(self._call(conn, owner, "/", avahi.DBUS_INTERFACE_SERVER, method, signature, args))
            except _AvahiError as exc:
                if exc.name != ERR_TOO_MANY_OBJECTS or conn.objects == 0:
                    raise
                log.info("avahi: connection %d is full at %d objects; using another", number, conn.objects)
                conn.limit = conn.objects
                continue
            conn.objects += 1
            self.routes[path] = sink
            return number, path

    def new_objects(self, owner: str, specs: list[tuple[str, str, tuple[Any, ...], Sink]]) -> list[Handle]:
        """(GLib) Several `new_object` in one hop; all or none."""
        made: list[Handle] = []
        try:
            for method, signature, args, sink in specs:
                made.append(self.new_object(owner, method, signature, args, sink))
        except BaseException:
            for handle in made:
                self.free(owner, handle)
            raise
        return made

    def free(self, owner: str, handle: Handle) -> None:
        """(GLib) Free an object; quietly, since it may have died with its daemon."""
        number, path = handle
        if self.routes.pop(path, None) is None or number >= len(self.conns):
            return  # already gone (daemon restart) or never routed
        conn = self.conns[number]
        conn.objects = max(0, conn.objects - 1)
        if conn.dead:
            return
        interface = (
            avahi.DBUS_INTERFACE_ENTRY_GROUP
            if "/EntryGroup" in path
            else avahi.DBUS_INTERFACE_SERVICE_BROWSER
            if "/ServiceBrowser" in path
            else avahi.DBUS_INTERFACE_RECORD_BROWSER
        )
        with contextlib.suppress(_Gone, _AvahiError):
            self._call(conn, owner, path, interface, "Free", "", ())

    def free_all(self, owner: str, handles: list[Handle]) -> None:
        """(GLib) `free` for a list of objects."""
        for handle in handles:
            self.free(owner, handle)

    def group_call(
        self, owner: str, handle: Handle, method: str, signature: str, args: tuple[Any, ...]
    ) -> Any:
        """(GLib) One method of an entry group."""
        number, path = handle
        if path not in self.routes:
            raise _Gone("entry group died with its daemon")
        return self._call(self.conns[number], owner, path, avahi.DBUS_INTERFACE_ENTRY_GROUP, method,
                          signature, args)  # fmt: skip

    def build_group(self, owner: str, entries: list[tuple[str, str, tuple[Any, ...]]], sink: Sink) -> Handle:
        """(GLib) EntryGroupNew, the Add* calls, Commit; the group is freed if any fails."""
        handle = self.new_object(owner, "EntryGroupNew", "", (), sink)
        try:
            self._fill(owner, handle, entries)
        except BaseException:
            self.free(owner, handle)
            raise
        return handle

    def rebuild_group(
        self, owner: str, handle: Handle, entries: list[tuple[str, str, tuple[Any, ...]]]
    ) -> None:
        """(GLib) Reset a committed group (goodbyes) and fill it again."""
        self.group_call(owner, handle, "Reset", "", ())
        self._fill(owner, handle, entries)

    def _fill(self, owner: str, handle: Handle, entries: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        for method, signature, args in entries:
            self.group_call(owner, handle, method, signature, args)
        self.group_call(owner, handle, "Commit", "", ())

    def interface_index(self, owner: str, name: str) -> int | None:
        """(GLib) The index avahi-daemon's own network namespace gives interface `name`."""
        try:
            return int(self.server_call(owner, "GetNetworkInterfaceIndexByName", "s", (name,)))
        except _AvahiError:
            return None


# ---------------------------------------------------------------------------
# the asyncio side


def _key(service_type: str, instance: str) -> tuple[str, str]:
    """DNS names compare case-insensitively, so the registries do too."""
    return (service_type.lower(), instance.lower())


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
        return tuple(sorted(found, key=_address_order))


@dataclass(eq=False)
class _Found:
    """One browsed instance: where its PTR is seen, and the watches that resolve it."""

    type: str
    instance: str
    present: set[tuple[int, int]] = field(default_factory=set)
    srv: _Watch | None = None
    txt: _Watch | None = None
    host: str | None = None  # lower-case fqdn of the SRV target, key of `_hosts_seen`


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


class AvahiLink:
    """A `LinkBackend` on avahi-daemon's D-Bus API (see the module docstring).

    `interfaces` are names (``lan0``) or addresses, as for `ZeroconfLink`; empty
    means every interface avahi-daemon serves.  The daemon is found on the system
    bus (``DBUS_SYSTEM_BUS_ADDRESS`` is honoured).
    """

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        publish_timeout: float = PUBLISH_TIMEOUT,
        objects_per_connection: int = OBJECTS_PER_CONNECTION,
        away_grace: float = AWAY_GRACE,
    ) -> None:
        self._scopes = select_scopes(tuple(interfaces))
        self._publish_timeout = publish_timeout
        self._away_grace = away_grace
        self._objects_per_connection = objects_per_connection
        self._glib: _GLibThread | None = None
        self._client: _AvahiClient | None = None
        self._owner = ""
        self._epoch = 0
        self._version = ""
        self._listener: LinkListener | None = None
        self._types: list[str] = []
        self._browsers: list[Handle] = []
        # discovery
        self._found: dict[tuple[str, str], _Found] = {}
        self._hosts_seen: dict[str, _HostWatch] = {}
        self._reported: dict[tuple[str, str], Service] = {}
        self._stale: set[tuple[str, str]] = set()  # reported before a daemon restart, not seen since
        # publishing
        self._published: dict[tuple[str, str], _Published] = {}
        self._hosts: dict[str, _Host] = {}
        self._own: set[tuple[str, str]] = set()  # (type, instance) keys of names in use here
        self._locks = KeyedLocks()
        self._background: set[asyncio.Task[Any]] = set()

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
        for state in (self._found, self._hosts_seen, self._reported, self._published, self._hosts):
            state.clear()
        self._stale.clear()
        self._own.clear()
        self._browsers.clear()

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
                _safely(self._listener.service_down, gone.type, gone.instance)

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
                _safely(self._listener.service_down, gone.type, gone.instance)
        self._stale.clear()

    # -- browsing --------------------------------------------------------------

    async def _start_browsers(self, epoch: int) -> None:
        client = self._require_started()
        specs = [
            ("ServiceBrowserNew", "iissu", (scope.index, scope.protocol, t, "", dbus.UInt32(0)),
             functools.partial(self._on_browse, t))
            for t in self._types
            for scope in self._scopes
        ]  # fmt: skip
        handles = await client.run(client.new_objects, self._owner, specs)
        if epoch == self._epoch:
            self._browsers = handles

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
        key = _key(service_type, name)
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
            _safely(self._listener.service_down, gone.type, gone.instance)

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
            port, labels = parse_srv(srv)
            host_label = labels[0].decode("utf-8")
            fqdn = ".".join(escape_label(lbl.decode("utf-8")) for lbl in labels).lower()
        except (ValueError, UnicodeDecodeError) as exc:
            if self._listener is not None:
                _safely(self._listener.service_refused, found.instance, f"bad SRV record: {exc}")
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
            service = Service(found.type, found.instance, host_label, port, parse_txt(txt), addresses)
        except ValueError as exc:
            if self._listener is not None:
                _safely(self._listener.service_refused, found.instance, str(exc))
            return
        self._stale.discard(key)
        if self._reported.get(key) != service and self._listener is not None:
            self._reported[key] = service
            _safely(self._listener.service_up, service)

    def _host_changed(self, fqdn: str) -> None:
        host = self._hosts_seen.get(fqdn)
        if host is not None:
            for key in list(host.users):
                self._evaluate(key)

    # -- publishing ------------------------------------------------------------

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
        key = _key(service_type, service.instance)
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
            self._own.add(_key(service_type, entry.name))
            try:
                await self._attach_host(key, service, old)  # addresses live in the host's group
                if (
                    old is not None
                    and (old.host, old.port) == (service.host, service.port)
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
                    self._own.discard(_key(service_type, entry.name))
                    await self._detach_host(key, service.host)
                raise
            return entry.name

    async def withdraw(self, service_type: str, instance: str) -> None:
        """Free a proxy's entry group (avahi sends the goodbyes); unknown names are ignored."""
        if self._client is None:
            return
        try:
            key = _key(normalize_type(service_type), instance)
        except RecordError:
            return
        async with self._locks.hold(key):
            entry = self._published.pop(key, None)
            if entry is None:
                return
            self._own.discard(_key(key[0], entry.name))
            await self._drop_group(entry.group)
            await self._detach_host(key, entry.service.host)

    def _service_entries(self, entry: _Published) -> list[tuple[str, str, tuple[Any, ...]]]:
        s = entry.service
        txt = dbus.Array([dbus.ByteArray(t) for t in s.txt], signature="ay")
        return [
            ("AddService", "iiussssqaay",
             (scope.index, scope.protocol, dbus.UInt32(0), entry.name, normalize_type(s.type), "",
              f"{escape_label(s.host)}.local", dbus.UInt16(s.port), txt))
            for scope in self._scopes
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
            if _key(service_type, entry.name) in self._found:
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
        self._own.discard(_key(service_type, entry.name))
        entry.name = new
        self._own.add(_key(service_type, new))

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
        wanted = tuple(sorted({a for addrs in host.users.values() for a in addrs}, key=_address_order))
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


def _safely(callback: Callable[..., None], *args: object) -> None:
    """Call a listener; its bugs are logged, never thrown into the link."""
    try:
        callback(*args)
    except Exception:
        log.exception("link listener failed in %r", callback)


# ---------------------------------------------------------------------------
# is avahi-daemon there? (for --mdns auto)


def probe_avahi(interfaces: Sequence[str] = (), timeout: float = 2.0) -> str | None:
    """Why `AvahiLink` cannot serve `interfaces` here, or None when it can.

    Checks that org.freedesktop.Avahi is on the system bus and that the daemon
    sees the same interfaces (name and index) as this process: a daemon in another
    network namespace is on the same bus more often than one would think (a
    gateway in a container or a test namespace, with the host's /run/dbus).
    Blocking, but short: one private connection, a few calls.
    """
    try:
        scopes = select_scopes(tuple(interfaces))
    except LinkError as exc:
        return str(exc)
    if not interfaces:
        adapters = [a for a in ifaddr.get_adapters() if a.index is not None and a.name != "lo"]
        candidates = [(a.name, int(a.index)) for a in adapters if a.index is not None]
    else:
        candidates = [(s.name, s.index) for s in scopes]
    try:
        bus = dbus.SystemBus(private=True)
    except dbus.exceptions.DBusException as exc:
        return f"no D-Bus system bus ({exc.get_dbus_message()})"
    try:
        bus.set_exit_on_disconnect(False)
        if not bus.call_blocking(*_DBUS, "NameHasOwner", "s", (avahi.DBUS_NAME,), timeout=timeout):
            return f"{avahi.DBUS_NAME} is not on the system bus"
        owner = str(bus.call_blocking(*_DBUS, "GetNameOwner", "s", (avahi.DBUS_NAME,), timeout=timeout))
        seen = []
        for name, index in candidates:
            try:
                theirs = bus.call_blocking(
                    owner, "/", avahi.DBUS_INTERFACE_SERVER, "GetNetworkInterfaceIndexByName", "s", (name,),
                    timeout=timeout,
                )  # fmt: skip
            except dbus.exceptions.DBusException:
                theirs = None
            seen.append(theirs == index)
        if interfaces and not all(seen):
            return "avahi-daemon does not see our interfaces (another network namespace?)"
        if not interfaces and candidates and not any(seen):
            return "avahi-daemon sees none of our interfaces (another network namespace?)"
        return None
    except dbus.exceptions.DBusException as exc:
        return f"avahi-daemon does not answer: {exc.get_dbus_message()}"
    finally:
        bus.close()
