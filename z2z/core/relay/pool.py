"""How many warm relay channels to keep ready per site: the recent connect rate, bounded.

A client's connect through the relay costs one request/reply round trip when
a handshaken TLS channel is waiting, and a TCP plus TLS handshake (two more
round trips and the CPU of the handshake) when none is.  A fixed pool of two
ran dry under back-to-back connects (bench.relay: most connects paid a
handshake).  So the pool follows demand: it keeps as many channels as
clients took in the last `horizon` seconds (the time a refill may take on a
slow WAN, with margin), never fewer than `low` for a site in use and never
more than `high`, because every warm channel holds a TLS connection and a
stream slot on the exporting gateway.  Channels beyond the target are not
closed at once: they age out (the adapter's `SPARE_AGE`), which keeps a pool
ready for the next burst without holding it forever.

Pure: the adapter passes the clock in; no I/O here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SPARES_LOW = 2  # warm channels per site in use, at least
SPARES_HIGH = 8  # warm channels per site, at most (each takes a stream slot on the exporting side)
HORIZON = 2.0  # seconds of recent connects the pool covers


@dataclass
class SparePolicy:
    """Counts the channels taken from one site's pool; says how many the pool should hold."""

    low: int = SPARES_LOW
    high: int = SPARES_HIGH
    horizon: float = HORIZON
    _taken: deque[float] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"spares: need 0 <= low <= high, got {self.low}, {self.high}")
        if self.horizon <= 0:
            raise ValueError(f"spares: horizon must be positive, got {self.horizon}")

    def taken(self, now: float) -> None:
        """A client's stream needed a channel at `now` (warm or not: demand is demand)."""
        self._taken.append(now)
        self._trim(now)

    def target(self, now: float) -> int:
        """Warm channels the pool should hold at `now`."""
        self._trim(now)
        return max(self.low, min(self.high, len(self._taken)))

    def _trim(self, now: float) -> None:
        while self._taken and now - self._taken[0] > self.horizon:
            self._taken.popleft()
        while len(self._taken) > self.high:  # more would not change the target: stay bounded
            self._taken.popleft()
