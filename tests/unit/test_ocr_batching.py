"""Tests for DynamicBatcher, driven by events rather than by sleeping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from engine.ocr_batching import (
    BatchCallError,
    BatcherClosed,
    BatchQueueFull,
    DynamicBatcher,
)
from engine.ocr_reader import CardReader, OcrRead
from perf.cards import CardFactory

HANG_GUARD_S = 60
"""Only guards against a hang; no assertion depends on time."""


class Gate:
    """A batch function that records batches and can hold a batch until opened.

    ``started`` is set (on the loop) each time a batch begins; while ``hold`` is
    set, the batch waits for ``release`` in its worker thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.started = asyncio.Event()
        self.hold = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.append(threading.current_thread().name)
        self.loop.call_soon_threadsafe(self.started.set)
        if self.hold.is_set():
            self.release.wait(HANG_GUARD_S)
        return [item * 10 for item in items]


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until a condition holds (bounded in turns, not time)."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_full_batch_is_sent_without_waiting_for_the_delay() -> None:
    """Reaching max_batch_size dispatches at once even with a very long delay."""
    gate = Gate(asyncio.get_running_loop())
    batcher = DynamicBatcher(gate, max_batch_size=4, max_queue_delay_ms=600_000)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in range(8))), HANG_GUARD_S
    )
    assert results == [i * 10 for i in range(8)]
    assert gate.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    await batcher.close()


async def test_lone_request_is_sent_after_the_delay() -> None:
    """A single request is not held forever: the delay sends a batch of one."""
    gate = Gate(asyncio.get_running_loop())
    batcher = DynamicBatcher(gate, max_batch_size=32, max_queue_delay_ms=1)
    assert await asyncio.wait_for(batcher.submit(7), HANG_GUARD_S) == 70
    assert gate.batches == [[7]]
    await batcher.close()


async def test_requests_gather_while_a_batch_runs() -> None:
    """Requests arriving during a running batch form the next batch together."""
    gate = Gate(asyncio.get_running_loop())
    gate.hold.set()
    batcher = DynamicBatcher(gate, max_batch_size=8, max_queue_delay_ms=0)
    first = asyncio.ensure_future(batcher.submit(0))
    await gate.started.wait()
    assert batcher.inflight_batches == 1
    later = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
    await _until(lambda: batcher.queued == 5)
    gate.hold.clear()
    gate.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *later), HANG_GUARD_S) == [
        0,
        10,
        20,
        30,
        40,
        50,
    ]
    assert gate.batches == [[0], [1, 2, 3, 4, 5]]
    stats = batcher.stats()
    assert stats["batches"] == 2
    assert stats["requests"] == 6
    assert stats["max_batch_size_seen"] == 5
    assert stats["mean_batch_size"] == 3.0
    await batcher.close()


async def test_full_queue_raises_backpressure_at_once() -> None:
    """Beyond max_queue_size waiting requests, submit raises BatchQueueFull."""
    gate = Gate(asyncio.get_running_loop())
    gate.hold.set()
    batcher = DynamicBatcher(
        gate, max_batch_size=2, max_queue_delay_ms=0, max_queue_size=2
    )
    running = asyncio.ensure_future(batcher.submit(0))
    await gate.started.wait()
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await _until(lambda: batcher.queued == 2)
    with pytest.raises(BatchQueueFull) as caught:
        await batcher.submit(3)
    assert caught.value.retry_after_ms >= 1
    assert batcher.stats()["rejected"] == 1
    gate.release.set()
    await asyncio.wait_for(asyncio.gather(running, *queued), HANG_GUARD_S)
    await batcher.close()


async def test_batch_function_runs_off_the_event_loop_thread() -> None:
    """The batch function runs in a worker thread, leaving the loop free."""
    gate = Gate(asyncio.get_running_loop())
    batcher = DynamicBatcher(gate, max_batch_size=1, name="probe")
    await batcher.submit(1)
    assert gate.threads[0] != threading.current_thread().name
    assert gate.threads[0].startswith("probe-batch")
    await batcher.close()


async def test_failure_reaches_every_request_of_the_batch_only() -> None:
    """A raising batch fails all its requests; the next batch still works."""
    calls: list[list[int]] = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return items

    batcher = DynamicBatcher(flaky, max_batch_size=3, max_queue_delay_ms=600_000)
    first = await asyncio.gather(
        *(batcher.submit(i) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in first)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 1, 2]
    assert batcher.stats()["failed_batches"] == 1
    await batcher.close()


async def test_wrong_result_count_is_an_error() -> None:
    """A batch function that loses results fails its batch with BatchCallError."""
    batcher = DynamicBatcher(
        lambda items: items[:-1], max_batch_size=2, max_queue_delay_ms=600_000
    )
    results = await asyncio.gather(
        batcher.submit(1), batcher.submit(2), return_exceptions=True
    )
    assert all(isinstance(r, BatchCallError) for r in results)
    await batcher.close()


async def test_cancelled_request_is_dropped_before_its_batch() -> None:
    """A request cancelled while queued never reaches the batch function."""
    gate = Gate(asyncio.get_running_loop())
    gate.hold.set()
    batcher = DynamicBatcher(gate, max_batch_size=8, max_queue_delay_ms=0)
    running = asyncio.ensure_future(batcher.submit(0))
    await gate.started.wait()
    keep = asyncio.ensure_future(batcher.submit(1))
    drop = asyncio.ensure_future(batcher.submit(2))
    await _until(lambda: batcher.queued == 2)
    drop.cancel()
    gate.hold.clear()
    gate.release.set()
    assert await asyncio.wait_for(asyncio.gather(running, keep), HANG_GUARD_S) == [
        0,
        10,
    ]
    assert gate.batches == [[0], [1]]
    await batcher.close()


async def test_close_fails_queued_requests() -> None:
    """Closing the batcher fails waiting requests and refuses new ones."""
    gate = Gate(asyncio.get_running_loop())
    gate.hold.set()
    batcher = DynamicBatcher(gate, max_batch_size=1, max_queue_delay_ms=0)
    running = asyncio.ensure_future(batcher.submit(0))
    await gate.started.wait()
    waiting = asyncio.ensure_future(batcher.submit(1))
    await _until(lambda: batcher.queued == 1)
    gate.release.set()
    await batcher.close()
    assert await running == 0
    with pytest.raises(BatcherClosed):
        await waiting
    with pytest.raises(BatcherClosed):
        await batcher.submit(2)


async def test_real_reader_batches_concurrent_photos() -> None:
    """Concurrent photos reach the real model as one batch and read correctly."""
    reader = CardReader(threads=2, providers=["CPUExecutionProvider"])
    cards = CardFactory(31, severity=0.5).cards(4)
    batcher: DynamicBatcher[bytes, OcrRead] = DynamicBatcher(
        reader.read_batch, max_batch_size=4, max_queue_delay_ms=600_000
    )
    reads = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(c.jpeg) for c in cards)), HANG_GUARD_S
    )
    assert [r.id_number for r in reads] == [c.truth.id_number for c in cards]
    assert batcher.stats()["batches"] == 1
    assert batcher.stats()["max_batch_size_seen"] == 4
    await batcher.close()
