"""How the gateway's actions are carried out: every task with an owner, puts and link operations in order.

- `TaskSet` is the one way the app layer starts a background task: it keeps a
  reference (asyncio only keeps weak ones), logs a crash instead of losing it,
  and cancels what is left on close.
- `KeyedSerial` runs link operations one after another per service and
  concurrently across services (publishing waits for probing).
- `PutQueue` delivers puts to the rendezvous: the newest version per instance
  wins, failures are retried with backoff and jitter while the rendezvous is
  away, so nothing valid is lost and nothing stale is sent after something newer.
- `Pacer` spreads a burst of new proxies over time, so that the link's other
  hosts (their receive buffers and daemons) keep up with the announcements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any

from z2z.adapters.rendezvous.base import Rendezvous
from z2z.core.bridge import Put

log = logging.getLogger(__name__)


class TaskSet:
    """Background tasks owned by one component; crashes are logged, close cancels the rest."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s failed", self.owner, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def stoppable_job(job: Callable[[], Awaitable[None]]) -> Callable[[], Coroutine[Any, Any, None]]:
    """A periodic job that ends quietly when the scheduler is shut down under it.

    APScheduler's asyncio executor cancels the jobs still running when the gateway
    stops it; a job waiting on the network (a DHT lookup, a full get) then sees
    `CancelledError`, which is the stop, not a failure worth a traceback.
    """

    @functools.wraps(job)
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:
            log.debug("job %s cut short by the stop", getattr(job, "__qualname__", job))

    return run


class KeyedSerial:
    """Run coroutines one after another per key, concurrently across keys."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Task[None]] = {}

    def submit(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        previous = self._tails.get(key)

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            try:
                await work()
            except Exception:
                log.exception("link operation on %s failed", key)
            finally:
                if self._tails.get(key) is task:
                    del self._tails[key]

        task = asyncio.get_running_loop().create_task(run())
        self._tails[key] = task

    async def drain(self, timeout: float) -> None:
        tasks = list(self._tails.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


class PutQueue:
    """Deliver puts to the rendezvous; newest version per instance wins; retry on failure.

    Backpressure: at most `concurrency` puts are in flight; the rest wait in
    `_pending`, which holds one put per instance (a newer version replaces a
    waiting one), so the queue is bounded by the number of exports and a burst
    of 1,000 new services costs 1,000 / `concurrency` rounds, not 1,000
    simultaneous requests that time out together (seen with the REST proxy).

    `on_result(ok, detail)` hears how each batch went (the gateway's health
    tracker); `observe(seconds)` gets each successful put's latency (metrics).
    """

    backoff_max = 10.0
    concurrency = 16

    def __init__(
        self,
        rendezvous: Rendezvous,
        on_result: Callable[[bool, str], None],
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.rendezvous = rendezvous  # switched when bridging moves to the leaders' DHT
        self._pending: dict[tuple[str, str], Put] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._retry = asyncio.Event()  # set by `retry_now`: cut the current backoff short
        self._on_result = on_result
        self._observe = observe
        self._tasks = TaskSet("put queue")
        self.failures = 0

    def start(self) -> None:
        self._tasks.spawn(self._run(), name="put-queue")

    def submit(self, put: Put) -> None:
        self._pending[(put.service_type, put.instance)] = put
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        delay = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._retry.clear()  # a `retry_now` from here on cuts the backoff after this batch
            batch = dict(self._pending)
            gate = asyncio.Semaphore(self.concurrency)
            results = await asyncio.gather(
                *(self._put_gated(gate, ikey, p) for ikey, p in batch.items()), return_exceptions=True
            )
            failed = False
            for (ikey, put), result in zip(batch.items(), results, strict=True):
                if isinstance(result, BaseException):
                    failed = True
                    self.failures += 1
                    self._on_result(False, f"{type(result).__name__}: {result}")
                elif self._pending.get(ikey) is put:
                    del self._pending[ikey]
            if failed:
                delay = min(self.backoff_max, max(0.5, delay * 2))
                await self._backoff(delay * random.uniform(0.5, 1.0))
                self._wake.set()
            else:
                if batch:
                    self._on_result(True, "")
                delay = 0.0
            if not self._pending:
                self._idle.set()
            else:
                self._wake.set()

    async def _put_gated(self, gate: asyncio.Semaphore, ikey: tuple[str, str], put: Put) -> None:
        async with gate:
            if self._pending.get(ikey) is not put:
                return  # a newer version came while this one waited: it goes in the next round
            await self._put(put)

    async def _put(self, put: Put) -> None:
        started = time.monotonic()
        await self.rendezvous.put(put.key, put.value_id, put.data)
        if self._observe is not None:
            self._observe(time.monotonic() - started)

    async def _backoff(self, seconds: float) -> None:
        """Wait before retrying, unless `retry_now` says the rendezvous is back."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._retry.wait(), seconds)

    def retry_now(self) -> None:
        """The rendezvous answers again: deliver what is pending without waiting out the backoff."""
        self._retry.set()

    async def drain(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return not self._pending

    async def close(self) -> None:
        await self._tasks.close()


class Pacer:
    """At most `rate` starts a second after a first second's worth at once (GCRA).

    Why: 3,000 imports arriving at once became 3,000 registrations and about
    9,000 announcement packets within two seconds; every other host's mDNS
    daemon (avahi-daemon's ~208 KiB socket buffer) dropped part of them, and a
    client like avahi-browse then missed services until its next query
    (issue 17).  Starts wait their turn (FIFO, nothing is refused); a `rate`
    of 0 turns pacing off.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tat = 0.0  # theoretical arrival time of the next start
        self.delayed = 0  # starts that had to wait

    @property
    def burst(self) -> int:
        """Starts let through at once before pacing begins: one second's worth."""
        return max(1, round(self.rate))

    def delay(self, now: float) -> float:
        """Reserve the next slot at `now`; seconds to wait for it."""
        if self.rate <= 0:
            return 0.0
        interval = 1.0 / self.rate
        tat = max(self._tat, now)
        self._tat = tat + interval
        return max(0.0, tat - (self.burst - 1) * interval - now)

    async def wait(self) -> None:
        delay = self.delay(time.monotonic())
        if delay > 0:
            self.delayed += 1
            await asyncio.sleep(delay)
