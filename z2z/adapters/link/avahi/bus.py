"""The GLib thread and the pool of D-Bus connections to avahi-daemon.

dbus-python delivers signals through a GLib main loop, and its objects are not
meant to be shared between threads: one daemon thread runs GLib's default main
context (`_GLibThread`) and every D-Bus call and signal handler runs there.
`_AvahiClient` is everything that touches dbus-python; the asyncio side
(`z2z.adapters.link.avahi.link`) awaits its methods with `_AvahiClient.run`.
`probe_avahi` asks, for ``--mdns auto``, whether a daemon serves our interfaces.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import avahi
import dbus
import dbus.mainloop.glib
import ifaddr
from gi.repository import GLib

from z2z.adapters.link.avahi.names import select_scopes
from z2z.adapters.link.base import LinkError

log = logging.getLogger(__name__)

# avahi-daemon's default objects-per-client-max is 1024; stay a little below it so
# that a few objects made outside the pool's count (none today) cannot hit it.
OBJECTS_PER_CONNECTION = 1000
# Beyond this many connections something is wrong (the system bus allows 256 per user).
MAX_CONNECTIONS = 64
# One blocking D-Bus call never waits longer than this: D-Bus's own default. avahi-daemon
# holding thousands of services can take more than 10 s to answer one call (seen in CI with
# 2,000 proxies); a daemon that leaves the bus is noticed at once, not by this timeout.
CALL_TIMEOUT = 25.0

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
