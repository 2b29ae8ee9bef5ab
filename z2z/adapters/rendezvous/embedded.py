"""An OpenDHT node inside the gateway process (PyPI ``opendht``, a Cython binding).

The node runs on its own C++ thread; every callback it makes arrives on that
thread and is handed to the asyncio loop with ``call_soon_threadsafe``.

Quirks of the binding (opendht 4.4.2) that shape this module:

- **Deadlock.** The DHT thread runs Python callbacks while holding the node's
  main mutex, and the binding keeps the GIL across every C++ call.  So a
  Python call that takes that mutex (``getRoutingTablesLog``, ``getBound``,
  ``getNodeMessageStats``, ``getStorageLog``, ``join``...) deadlocks as soon as
  a callback is due.  Those are called only in `start`, before any callback
  exists; afterwards only queue-based calls (``put``, ``get``, ``listen``,
  ``cancelListen``, ``bootstrap``, ``shutdown``) and the lock-free
  ``getNodeId``; peers are then counted with a lookup, and ``join`` comes
  after ``shutdown`` has drained every operation and the DHT thread has left
  Python for good (see `EmbeddedRendezvous.close`).
- ``InfoHash(b"<40 hex digits>")`` parses hex; ``InfoHash(<20 raw bytes>)``
  silently yields the all-zero hash.  Keys are always passed as hex here.
- ``Value(data)`` takes the payload only; the id must be set with ``.id = n``.
- ``bootstrap(host, port)`` wants the port as a *string*, resolves in the
  background and never reports (``ping(SockAddr, cb)`` does, but an unanswered
  ping keeps ``shutdown`` waiting ~8 s).
- ``put(key, value)`` without a ``done_cb`` blocks and drops ``permanent``;
  a put with no peer to store it reports failure (the node still keeps it).
- ``cancelListen`` decrements the reference count of whichever listen
  callback was registered *last* (``ListenToken._cb`` is one dict shared by all
  tokens).  We hand it the right one and keep every listen callback alive until
  the node is shut down, so the C++ side never calls into freed memory.
- A node bound to IPv4 only cannot cancel a listen at all (OpenDHT's
  ``Dht::listen`` returns token 0 when the IPv6 search cannot be made, leaving
  the IPv4 listener behind); our callback then returns False, which makes
  OpenDHT drop it at the next value.  Bind both families (the default does).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from z2z.adapters.rendezvous.base import (
    AnswerTooBig,
    ConditionLog,
    DhtValue,
    ListenCallback,
    PutNotConfirmed,
    RendezvousError,
    check_key,
    check_value_id,
)

if TYPE_CHECKING:
    import opendht

log = logging.getLogger(__name__)

DEFAULT_PORT = 4222
NODE_INFO_WAIT = 2.0
_AF_INET, _AF_INET6 = 2, 10  # Linux values; the binding wants the raw number


def check_bindable(ipv4: str, ipv6: str, port: int) -> None:
    """Raise RendezvousError if OpenDHT could not bind these addresses.

    ``DhtRunner.run`` reports a bind failure with a C++ exception the binding does
    not translate: the process aborts.  So try the same binds first (a port taken
    between this check and ``run`` still aborts; it is a narrow window).
    """
    wanted: list[tuple[socket.AddressFamily, str, bool]] = []
    if ipv4 or not ipv6:
        wanted.append((socket.AF_INET, ipv4 or "0.0.0.0", True))
    if ipv6:
        wanted.append((socket.AF_INET6, ipv6, True))
    elif not ipv4:
        wanted.append((socket.AF_INET6, "::", False))  # used if the host has IPv6
    for family, address, required in wanted:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((address, port))
        except OSError as exc:
            if required or exc.errno == errno.EADDRINUSE:
                raise RendezvousError(
                    f"the OpenDHT node cannot bind UDP {address} port {port}: {exc.strerror}"
                ) from None


def good_nodes(routing_log: str) -> int:
    """How many ``[good]`` nodes a ``getRoutingTablesLog`` text lists."""
    return sum(1 for ln in routing_log.splitlines() if ln.lstrip().startswith("Node ") and "[good]" in ln)


def _import_opendht() -> Any:
    try:
        import opendht
    except ImportError as exc:  # wheels exist for x86_64/aarch64 glibc >= 2.34 only
        raise RendezvousError(
            "the embedded OpenDHT node needs the Python module 'opendht' (pip install opendht);"
            " or use an OpenDHT proxy: --rendezvous http://host:port"
        ) from exc
    return opendht


class EmbeddedRendezvous:
    """A `Rendezvous` that is itself an OpenDHT node, bootstrapped to `bootstrap`.

    `port` is the local UDP port (0: any); `network_id` keeps z2z's DHT apart
    from others (nodes of different networks never pair).  `ipv4`/`ipv6` bind
    addresses ("" for all; give both or neither, see the module notes).
    `start` waits up to `bootstrap_timeout` for a bootstrap node to answer and
    then returns anyway: a node without peers still works and is found later.
    """

    trouble: ConditionLog | None = None  # failures are raised to the caller, which logs them

    def __init__(
        self,
        bootstrap: Sequence[tuple[str, int]],
        *,
        port: int = 0,
        network_id: int = 0,
        ipv4: str = "",
        ipv6: str = "",
        timeout: float = 10.0,
        bootstrap_timeout: float = 5.0,
        max_values: int = 4096,
        permanent: bool = False,
    ) -> None:
        self.bootstrap = [(str(h), int(p)) for h, p in bootstrap]
        self.port = port
        self.network_id = network_id
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.timeout = timeout
        self.bootstrap_timeout = bootstrap_timeout
        self.max_values = max_values
        self.permanent = permanent
        self.bound_port: int | None = None
        #: Nodes that answered the last finished put/get/lookup.
        self.last_peers = 0
        self._runner: opendht.DhtRunner | None = None
        self._listens: set[_EmbeddedListen] = set()
        # Listen callback dicts the binding still points at; freed after shutdown only.
        self._keepalive: list[object] = []

    def __repr__(self) -> str:
        return f"EmbeddedRendezvous(bootstrap={self.bootstrap!r}, port={self.port})"

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._runner is not None:
            return
        dht = _import_opendht()
        check_bindable(self.ipv4, self.ipv6, self.port)
        runner = dht.DhtRunner()
        config = dht.DhtConfig()
        config.setNetwork(self.network_id)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(runner.run, port=self.port, ipv4=self.ipv4, ipv6=self.ipv6, config=config),
                self.timeout,
            )
        except (OSError, RuntimeError, ValueError, TimeoutError) as exc:
            msg = f"cannot start the OpenDHT node on port {self.port}: {exc}"
            raise RendezvousError(msg) from exc
        if not runner.isRunning():
            raise RendezvousError(f"the OpenDHT node did not start (port {self.port} in use?)")
        try:
            # Safe only now, before any Python callback is registered (module notes).
            self.bound_port = int(runner.getBound().getPort())
            for host, port in self.bootstrap:
                runner.bootstrap(host, str(port))  # remembered: re-bootstraps when alone
            if self.bootstrap and not await self._wait_for_peer(runner, self.bootstrap_timeout):
                log.warning(
                    "OpenDHT node: no bootstrap node answered within %g s (%s); carrying on alone",
                    self.bootstrap_timeout,
                    ", ".join(f"{h}:{p}" for h, p in self.bootstrap),
                )
        except BaseException:  # cancelled while waiting for a peer: stop the node again
            await asyncio.shield(self._stop(runner))
            raise
        self._runner = runner

    async def _wait_for_peer(self, runner: Any, timeout: float) -> bool:
        """True once a bootstrap node answered (it shows as good in the routing table).

        Reading the routing table is safe only here, while no Python callback is
        registered on `runner` (module notes, "Deadlock").  A ping with a callback
        would report too, but a ping that gets no answer holds `close` for ~8 s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if any(good_nodes(runner.getRoutingTablesLog(af)) for af in (_AF_INET, _AF_INET6)):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Cancel listens, shut the node down and join its thread."""
        runner, self._runner = self._runner, None
        for handle in list(self._listens):
            handle.cancel(runner)
        self._listens.clear()
        if runner is None or not await self._stop(runner):
            return  # keep the callbacks alive: the C++ thread may still call them
        self._keepalive.clear()

    async def _stop(self, runner: Any) -> bool:
        """Shut `runner` down and join its thread; False if it would not stop in time.

        ``join`` keeps the GIL while it waits for the DHT thread, so it may only
        start once that thread has run its last Python code (module notes,
        "Deadlock").  Every operation has ended when the shutdown callback runs
        (even an empty one enters Python), and the callback's thread state is gone
        from `sys._current_frames` once the DHT thread has left Python for good.
        """
        me = threading.get_ident()
        stopped_by: list[int] = []
        # No call_soon_threadsafe here: its self-pipe write drops the GIL mid-callback.
        runner.shutdown(lambda: stopped_by.append(threading.get_ident()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not stopped_by or (stopped_by[0] != me and stopped_by[0] in sys._current_frames()):
            if loop.time() > deadline:
                log.warning("OpenDHT node did not shut down within %g s", self.timeout)
                return False
            await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(asyncio.to_thread(runner.join), self.timeout)
        except TimeoutError:
            log.warning("OpenDHT node thread did not end within %g s", self.timeout)
            return False
        return True

    def add_bootstrap(self, nodes: Sequence[tuple[str, int]]) -> None:
        """Meet more nodes now, even though this node already has peers.

        ``bootstrap`` alone only remembers them (OpenDHT contacts bootstrap nodes
        while it is disconnected), so two DHTs formed apart would never merge; a
        ping inserts each answering node in the routing table at once, and OpenDHT
        merges the rest by itself (seen here: two 2-node networks on one key
        answered each other's gets within 2 s).  Pings are queued calls (safe any
        time); their callbacks are kept alive until shutdown.
        """
        runner, dht = self._running()
        for host, port in nodes:
            if (host, port) not in self.bootstrap:
                self.bootstrap.append((host, port))
            runner.bootstrap(host, str(port))
            try:
                addresses = dht.SockAddr.resolve(host, str(port))
            except Exception as exc:  # the binding raises plain errors for unresolvable names
                log.warning("cannot resolve DHT contact %s:%d: %s", host, port, exc)
                continue
            for address in addresses:
                answered: list[bool] = []
                self._keepalive.append(answered)
                runner.ping(address, answered.append)

    # -- operations ------------------------------------------------------------
    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        runner, dht = self._running()
        value = dht.Value(bytes(data))
        value.id = check_value_id(value_id)
        loop = asyncio.get_running_loop()
        result: asyncio.Future[tuple[bool, int]] = loop.create_future()

        def done(ok: bool, nodes: Sequence[object]) -> None:  # on the DHT thread
            self.last_peers = len(nodes)
            _resolve(loop, result, (bool(ok), len(nodes)))

        runner.put(self._hash(key), value, done, self.permanent)
        try:
            ok, _ = await asyncio.wait_for(result, self.timeout)
        except TimeoutError as exc:
            raise RendezvousError(f"OpenDHT put not done after {self.timeout:g} s") from exc
        if not ok:
            raise PutNotConfirmed("no OpenDHT peer confirmed the put (the local node keeps it)")

    async def get(self, key: bytes) -> list[DhtValue]:
        """Every value found under `key`; a failed, overlong or oversized get raises.

        A node without peers reports every get as failed (even though it returns
        what it stores itself): that raises too, as no complete answer exists.
        """
        found, ok, _ = await self._lookup(self._hash(key))
        if len(found) > self.max_values:
            raise AnswerTooBig(
                f"more than {self.max_values} values under one key; stopped reading", found[: self.max_values]
            )
        if not ok:
            raise RendezvousError("OpenDHT get failed (no peer answered)")
        return found

    async def _lookup(self, infohash: Any, timeout: float | None = None) -> tuple[list[DhtValue], bool, int]:
        """(values, ok, answering nodes) of an OpenDHT get on `infohash`."""
        runner, _dht = self._running()
        loop = asyncio.get_running_loop()
        found: dict[tuple[int, bytes], DhtValue] = {}
        result: asyncio.Future[tuple[bool, int]] = loop.create_future()
        limit = self.max_values

        def on_value(v: Any) -> bool:  # on the DHT thread; dict ops are atomic under the GIL
            value = DhtValue(int(v.id), bytes(v.data))
            found.setdefault((value.id, value.data), value)
            return len(found) <= limit  # False stops the get

        def on_done(ok: bool, nodes: Sequence[object]) -> None:
            self.last_peers = len(nodes)  # an int store is atomic under the GIL
            _resolve(loop, result, (bool(ok), len(nodes)))

        runner.get(infohash, on_value, on_done)
        try:
            ok, nodes = await asyncio.wait_for(result, timeout or self.timeout)
        except TimeoutError as exc:
            raise RendezvousError(f"OpenDHT get not done after {self.timeout:g} s") from exc
        return list(found.values()), ok, nodes

    def listen(self, key: bytes, callback: ListenCallback) -> _EmbeddedListen:
        runner, dht = self._running()
        handle = _EmbeddedListen(self, callback, asyncio.get_running_loop())
        handle.token = runner.listen(self._hash(key), handle.on_dht_value)
        # The binding's shared ListenToken._cb now holds this listen's callback dict.
        shared = getattr(dht.ListenToken, "_cb", None)
        handle.cb_obj = shared.get("cb") if isinstance(shared, dict) else None
        if handle.cb_obj is not None:
            self._keepalive.append(handle.cb_obj)
        self._listens.add(handle)
        return handle

    async def node_info(self) -> dict[str, Any]:
        """Node id and `peers`: how many nodes answered a lookup of our own id.

        The routing table cannot be read safely (module notes), so a lookup counts
        peers (at most ~8 per address family).  With unreachable peers a lookup
        takes ~8 s; after `NODE_INFO_WAIT` s the count of the last finished
        operation is given instead (``peers_stale``) and the lookup completes
        in the background.
        """
        runner, _dht = self._running()
        node_id = runner.getNodeId()
        stale = False
        try:
            _values, _ok, peers = await self._lookup(node_id, min(NODE_INFO_WAIT, self.timeout))
        except RendezvousError:
            peers, stale = self.last_peers, True
        return {
            "backend": "embedded",
            "node_id": node_id.toString().decode(),
            "peers": peers,
            "peers_stale": stale,
            "port": self.bound_port,
            "network_id": self.network_id,
            "bootstrap": [f"{h}:{p}" for h, p in self.bootstrap],
            "listens": len(self._listens),
        }

    # -- helpers ---------------------------------------------------------------
    def _running(self) -> tuple[Any, Any]:
        if self._runner is None:
            raise RendezvousError("the embedded OpenDHT node is not running (call start())")
        return self._runner, _import_opendht()

    def _hash(self, key: bytes) -> Any:
        return _import_opendht().InfoHash(check_key(key).encode("ascii"))


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any) -> None:
    """Set `fut` from a DHT thread; harmless if it was cancelled or the loop is gone."""

    def setter() -> None:
        if not fut.done():
            fut.set_result(result)

    with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
        loop.call_soon_threadsafe(setter)


class _EmbeddedListen:
    """One OpenDHT listen; `cancel` stops callbacks at once even if OpenDHT lags."""

    def __init__(
        self, owner: EmbeddedRendezvous, callback: ListenCallback, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.owner = owner
        self.callback = callback
        self.loop = loop
        self.token: Any = None
        self.cb_obj: object | None = None
        self.cancelled = False

    def on_dht_value(self, value: Any, expired: bool) -> bool:
        """Called on the DHT thread; returning False asks OpenDHT to drop the listen."""
        if self.cancelled:
            return False
        item = DhtValue(int(value.id), bytes(value.data))
        try:
            self.loop.call_soon_threadsafe(self._deliver, item, bool(expired))
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _deliver(self, value: DhtValue, expired: bool) -> None:
        if self.cancelled:
            return
        try:
            self.callback(value, expired)
        except Exception:
            log.exception("listen callback failed")

    def cancel(self, runner: Any = None) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.owner._listens.discard(self)
        runner = runner if runner is not None else self.owner._runner
        if runner is None or self.token is None:
            return
        shared = getattr(_import_opendht().ListenToken, "_cb", None)
        if isinstance(shared, dict) and self.cb_obj is not None:
            shared["cb"] = self.cb_obj  # make the binding release *this* callback
        runner.cancelListen(self.token)
