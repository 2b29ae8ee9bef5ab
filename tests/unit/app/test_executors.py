"""The executors: owned tasks, stoppable jobs, a put queue whose backoff a recovery cuts short, a pacer."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from support.helpers import until

from z2z.adapters.rendezvous.base import RendezvousError
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.executors import Pacer, PutQueue, TaskSet, stoppable_job
from z2z.core.bridge import Put


async def test_a_job_cut_short_by_the_scheduler_shutdown_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def slow() -> None:  # a DHT lookup in flight when the gateway stops
        started.set()
        await asyncio.sleep(10)

    for job in (slow, stoppable_job(slow)):
        caplog.clear()
        started.clear()
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        scheduler.add_job(job, "interval", seconds=0.05)
        scheduler.start()
        await asyncio.wait_for(started.wait(), 2)
        with caplog.at_level(logging.ERROR, logger="apscheduler"):
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0.05)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        if job is slow:
            assert errors  # the bare job: APScheduler logs the cancellation with a traceback
        else:
            assert not errors


async def test_taskset_logs_a_crash_and_cancels_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("test")

    async def crash() -> None:
        raise ValueError("boom")

    forever = tasks.spawn(asyncio.sleep(60), name="forever")
    tasks.spawn(crash(), name="crash")
    await until(lambda: len(tasks) == 1)
    assert any("crash" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    await tasks.close()
    assert forever.cancelled()


async def test_put_queue_retries_at_once_when_told_the_rendezvous_is_back() -> None:
    dht = MemoryDht()
    dht.up = False
    results: list[bool] = []
    queue = PutQueue(MemoryRendezvous(dht), lambda ok, _detail: results.append(ok))
    queue.backoff_max = 60.0  # without `retry_now` the second try would be far away
    queue.start()
    queue.submit(Put(b"k" * 20, 1, b"v", "_ipp._tcp", "Printer", "new"))
    await until(lambda: len(results) >= 2)  # two failures: the backoff has grown past a second
    dht.up = True
    loop = asyncio.get_running_loop()
    told = loop.time()
    queue.retry_now()
    assert await queue.drain(2.0)
    assert loop.time() - told < 0.5
    assert dht.values[b"k" * 20] == {1: b"v"}
    await queue.close()


async def test_put_queue_newest_version_wins() -> None:
    dht = MemoryDht()
    seen: list[bytes] = []
    rendezvous = MemoryRendezvous(dht)
    original = rendezvous.put

    async def slow_put(key: bytes, value_id: int, data: bytes) -> None:
        await asyncio.sleep(0.05)
        seen.append(data)
        await original(key, value_id, data)

    rendezvous.put = slow_put  # type: ignore[method-assign]
    queue = PutQueue(rendezvous, lambda ok, _detail: None)
    queue.start()
    for n in range(5):  # five versions of one instance while the first put is in flight
        queue.submit(Put(b"k" * 20, n, f"v{n}".encode(), "_ipp._tcp", "Printer", "changed"))
        await asyncio.sleep(0)
    assert await queue.drain(2.0)
    assert seen[-1] == b"v4" and len(seen) <= 2
    await queue.close()


def test_failed_rendezvous_error_is_a_z2z_error() -> None:
    exc = RendezvousError("put to x: timeout", "timeout")
    assert exc.reason == exc.condition == "timeout"


def test_pacer_lets_one_second_through_then_paces() -> None:
    pacer = Pacer(100.0)
    delays = [pacer.delay(10.0) for _ in range(300)]  # 300 new proxies at the same instant
    assert delays[:100] == [0.0] * 100  # the first second's worth at once
    assert delays[100] == pytest.approx(0.01) and delays[299] == pytest.approx(2.0)
    assert all(b > a for a, b in itertools.pairwise(delays[100:]))  # FIFO, evenly spread
    # Idle time refills the allowance, but never beyond one second's worth.
    assert [pacer.delay(100.0) for _ in range(101)][-2:] == pytest.approx([0.0, 0.01], abs=1e-9)


def test_pacer_rate_zero_is_off_and_a_reload_applies_at_once() -> None:
    pacer = Pacer(0.0)
    assert {pacer.delay(5.0) for _ in range(10_000)} == {0.0}
    pacer.rate = 1.0  # `announce-rate` reloaded
    assert [pacer.delay(6.0) for _ in range(3)] == [0.0, 1.0, 2.0]


async def test_pacer_wait_sleeps_its_turn() -> None:
    pacer = Pacer(50.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(pacer.wait() for _ in range(60)))
    assert loop.time() - t0 >= 0.19 and pacer.delayed == 10  # ten over the burst, 20 ms apart
