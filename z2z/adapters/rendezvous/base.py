"""The rendezvous side of the gateway: an OpenDHT-compatible put/get/listen store.

Two implementations exist: the OpenDHT REST proxy spoken over httpx
(`z2z.adapters.rendezvous.proxy`) and an embedded OpenDHT node (`z2z.adapters.rendezvous.embedded`).
Both carry opaque bytes; what the bytes mean is `z2z.core.wire.envelope`'s business.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from z2z.core.errors import Z2zError


class RendezvousError(Z2zError, RuntimeError):
    """The rendezvous could not be reached or refused an operation.

    `reason` (also `condition`) is a short, stable label of what went wrong
    (``timeout``, ``HTTP 500``, ``not HTTP``...), so that logs and metrics can
    group failures whose messages differ only in keys or byte counts.
    """

    def __init__(self, message: str, condition: str = "error") -> None:
        super().__init__(message, condition)

    @property
    def condition(self) -> str:
        return self.reason


class PutNotConfirmed(RendezvousError):
    """No DHT peer confirmed a put; the local node (or the proxy's node) still keeps it.

    Typical of a node without peers (a lone dhtnode answers 502): worth a retry,
    not an alarm.
    """


class AnswerTooBig(RendezvousError):
    """A get answered more values (or bytes) than the caller's cap: the DHT is fine, the answer is not.

    Its own condition, not an outage: `values` holds what was read before the
    cap (de-duplicated), which callers may still use, since z2z never takes a
    value's absence for a withdrawal (imports expire on their own TTL).
    """

    def __init__(self, message: str, values: list[DhtValue]) -> None:
        super().__init__(message, "answer too big")
        self.values = values


class ConditionLog:
    """Log each way a rendezvous fails once, not once per request, key or operation.

    A broken or lying rendezvous fails the same way thousands of times (every
    put retry, every listen reconnect, every key).  The first failure of each
    `condition` (``timeout``, ``HTTP 500``...) is logged as a warning; repeats
    are only counted (`counts`).  A transport condition is over once every
    operation (`op`: put, get, listen...) that met it has worked again
    (`worked`), or once it has not recurred for `quiet` seconds; only then is
    it logged again if it recurs.  So a proxy that lies to puts but answers gets
    is logged once, and a listen on a key nobody writes (which never proves it
    works) does not keep an old condition open.  Bad content
    (`transient=False`: junk values from a proxy that otherwise works) is
    logged at most once per `rearm` seconds.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        quiet: float = 120.0,
        rearm: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.quiet = quiet
        self.rearm = rearm
        self.clock = clock
        self.counts: Counter[str] = Counter()  # condition -> failures
        self._ops: dict[str, set[str]] = {}  # open transport condition -> ops that met it, not yet worked
        self._seen: dict[str, float] = {}  # open transport condition -> last failure
        self._junk_logged: dict[str, float] = {}  # content condition -> when last logged

    @property
    def failing(self) -> list[str]:
        """Transport conditions not over yet."""
        self._forget_quiet()
        return sorted(self._ops)

    def failed(self, op: str, condition: str, detail: str, *, transient: bool = True) -> None:
        self.counts[condition] += 1
        now = self.clock()
        if transient:
            self._forget_quiet()
            self._seen[condition] = now
            ops = self._ops.get(condition)
            if ops is not None:
                ops.add(op)
                return
            self._ops[condition] = {op}
            self.logger.warning(
                "%s: %s (%s: %s); retrying with backoff, further failures of this kind are only counted",
                self.what,
                condition,
                op,
                detail,
            )
            return
        logged = self._junk_logged.get(condition)
        if logged is not None and now - logged < self.rearm:
            return
        self._junk_logged[condition] = now
        self.logger.warning(
            "%s: %s (%s: %s); ignored, further ones are only counted", self.what, condition, op, detail
        )

    def worked(self, op: str) -> None:
        """`op` succeeded: conditions only it was still meeting are over."""
        for ops in self._ops.values():
            ops.discard(op)
        self._end([c for c, ops in self._ops.items() if not ops])

    def _forget_quiet(self) -> None:
        now = self.clock()
        self._end([c for c, at in self._seen.items() if now - at >= self.quiet])

    def _end(self, over: list[str]) -> None:
        for condition in over:
            del self._ops[condition]
            del self._seen[condition]
        if over:
            self.logger.info(
                "%s works again (after %s)",
                self.what,
                ", ".join(f"{c} ×{self.counts[c]}" for c in sorted(over)),
            )


KEY_BYTES = 20  # OpenDHT InfoHash
MAX_VALUE_ID = 2**64 - 1


def check_key(key: bytes) -> str:
    """The 40-hex-digit form of a 20-byte key (OpenDHT InfoHash); ValueError otherwise."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise ValueError(f"a rendezvous key is {KEY_BYTES} bytes, got {key!r:.60}")
    return bytes(key).hex()


def check_value_id(value_id: int) -> int:
    if not isinstance(value_id, int) or not 0 <= value_id <= MAX_VALUE_ID:
        raise ValueError(f"value id must be an unsigned 64-bit integer, got {value_id!r}")
    return value_id


@dataclass(frozen=True, slots=True)
class DhtValue:
    """One value stored under a key: OpenDHT's 64-bit value id and its payload."""

    id: int
    data: bytes


# callback(value, expired): `expired` is True when the DHT reports the value gone.
ListenCallback = Callable[[DhtValue, bool], None]


class ListenHandle(Protocol):
    def cancel(self) -> None:
        """Stop listening; no callback is made after this returns."""


class Rendezvous(Protocol):
    """Put/get/listen on 20-byte keys (OpenDHT InfoHash).

    `trouble` is the adapter's own `ConditionLog` when it logs each failure
    condition itself (the REST proxy), else None: callers then log failures.
    """

    @property
    def trouble(self) -> ConditionLog | None:
        """The adapter's own failure log, or None."""

    async def start(self) -> None:
        """Connect (or boot the embedded node); raise RendezvousError if unreachable."""

    async def put(self, key: bytes, value_id: int, data: bytes) -> None:
        """Store `data` under `key` with `value_id`; raise RendezvousError on failure."""

    async def get(self, key: bytes) -> list[DhtValue]:
        """Every value currently stored under `key`; raise RendezvousError on failure."""

    def listen(self, key: bytes, callback: ListenCallback) -> ListenHandle:
        """Call `callback` on the event loop for each value that arrives under `key`.

        The subscription survives rendezvous outages: the implementation reconnects
        with backoff and replays what is stored when it comes back.
        """

    async def node_info(self) -> dict[str, Any]:
        """Diagnostics: node id, number of good peers, ... (implementation-defined keys)."""

    async def close(self) -> None:
        """Cancel listens and release connections (the embedded node shuts down)."""
