"""Is a store (the outside rendezvous, the leaders' DHT) answering? One tracker for every user.

A store is up while none of the operations reported on it is failing.  It is
kept per operation (``put``, ``get``...) so that a proxy failing one and
answering the other (a lying one) does not flip the verdict, and the logs, at
every round: an operation is failing from its first failure until it works
again.  `changed(up, detail)` is called once per change of verdict.

The gateway keeps one `StoreHealth` for the operations of bridging (puts of
exports, anti-entropy gets) and the leadership one for the leaders registry on
the outside rendezvous: two stores of facts, one rule.
"""

from __future__ import annotations

from collections.abc import Callable


class StoreHealth:
    """Per-operation failure tracking with one up/down verdict."""

    def __init__(self, changed: Callable[[bool, str], None], *, up: bool | None = True) -> None:
        self._changed = changed
        self._failing: dict[str, str] = {}  # op -> why it failed last
        self.up = up  # None: not known yet (the first report decides, and is announced)

    @property
    def failing(self) -> dict[str, str]:
        return dict(self._failing)

    def report(self, op: str, ok: bool, detail: str = "") -> bool:
        """Record how `op` went; True when the verdict changed (and `changed` was called)."""
        if ok:
            self._failing.pop(op, None)
        else:
            self._failing[op] = detail
        up = not self._failing
        if up == self.up:
            return False
        self.up = up
        self._changed(up, detail)
        return True
