"""Splice two byte streams with backpressure: bounded reads, `drain` before the next read.

Each direction reads at most `chunk` bytes and waits for the writer to drain
below its high-water mark before reading again, so a fast sender meets the
slow receiver's pace (TCP's own flow control) and no queue grows without
bound.  The stream ends when both directions ended, when one ended towards a side
that cannot half-close (TLS), on an error, or after
`idle` seconds without a byte in either direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

CHUNK = 64 * 1024


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    idle: float,
    last: list[float],
    counted: list[int],
    first: Callable[[], None] | None = None,
) -> bool:
    """Copy until EOF; True if the EOF could be passed on (a TLS writer cannot half-close).

    `first` is called once, after the first chunk was written on.
    """
    while True:
        try:
            data = await asyncio.wait_for(reader.read(CHUNK), timeout=idle / 4)
        except TimeoutError:
            if time.monotonic() - last[0] > idle:
                raise
            continue
        if not data:
            break
        last[0] = time.monotonic()
        counted[0] += len(data)
        writer.write(data)
        if first is not None:
            first()
            first = None
        await writer.drain()
    if not writer.can_write_eof():
        return False
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
    return True


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    idle: float,
    *,
    first_back: Callable[[], None] | None = None,
) -> int:
    """Carry bytes both ways until done; close both sides; return the bytes carried.

    `first_back` is called once, when the first bytes from `b` were written to `a`
    (the relay refills its warm channels then, off the stream's first round trip).
    """
    last = [time.monotonic()]
    counted = [0]
    tasks = [
        asyncio.ensure_future(_pump(a[0], b[1], idle, last, counted)),
        asyncio.ensure_future(_pump(b[0], a[1], idle, last, counted, first_back)),
    ]
    try:
        pending: set[asyncio.Future[bool]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # An error ends the stream; so does an EOF the other side cannot be told
            # of (TLS has no half-close in asyncio): closing is then the only EOF.
            if any(t.cancelled() or t.exception() is not None or not t.result() for t in done):
                break
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for _, w in (a, b):
            w.close()
        for _, w in (a, b):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 2.0)
    return counted[0]
