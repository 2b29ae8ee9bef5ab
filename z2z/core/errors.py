"""One shape for every error z2z raises on purpose, like h11's ProtocolError.

Every error carries `reason`: a short, stable label (``bad-signature``,
``timeout``, ``config``...) that code may branch on and that logs, counters and
metrics group by.  The message (``str(exc)``) is for people only: no code parses
it.  The concrete classes also keep the builtin base they always had
(``ValueError`` for bad input, ``RuntimeError`` for an unreachable outside world,
``OSError`` for files), so existing ``except ValueError`` clauses keep working.
"""

from __future__ import annotations


class Z2zError(Exception):
    """Base of z2z's errors; `reason` is the machine-readable label."""

    default_reason = "error"

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        self.reason = reason or self.default_reason
        super().__init__(message or self.reason)
