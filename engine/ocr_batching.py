"""Dynamic batching of model calls on asyncio, in the style of Triton's batcher."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from engine.exceptions import BackpressureError, IngestError

__all__ = [
    "BatchCallError",
    "BatchQueueFull",
    "BatchRecord",
    "BatcherClosed",
    "DynamicBatcher",
]

log = structlog.get_logger()

T = TypeVar("T")
R = TypeVar("R")

RECENT_BATCHES = 256
"""Batches kept for the recent-latency figures in :meth:`DynamicBatcher.stats`."""


class BatchQueueFull(BackpressureError):
    """The batcher already holds ``max_queue_size`` waiting requests."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled across processes (Ray) with its fields, which the default
        # Exception pickling would drop, and retry_after_ms is required.
        return (_rebuild_queue_full, (self.message, self.fields))


def _rebuild_queue_full(message: str, fields: dict[str, Any]) -> BatchQueueFull:
    return BatchQueueFull(message, **fields)


class BatchCallError(IngestError):
    """The batch function broke its contract (returned the wrong number of results)."""


class BatcherClosed(IngestError):
    """The batcher was closed before the request could run."""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One dispatched batch.

    Attributes:
        size: requests in the batch.
        batch_wait_ms: how long its oldest request waited in the queue.
        inference_ms: how long the batch function ran.
    """

    size: int
    batch_wait_ms: float
    inference_ms: float


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float


class DynamicBatcher(Generic[T, R]):
    """Gathers single requests into batches for a batch function.

    Algorithm: requests wait in one FIFO queue. A dispatcher task takes the
    oldest request and keeps gathering until the batch holds
    ``max_batch_size`` requests or the oldest has waited
    ``max_queue_delay_ms``, whichever comes first (as Triton's dynamic batcher
    does), then calls ``batch_fn`` once with the whole batch in a worker
    thread, so the event loop stays free. Up to ``max_inflight_batches``
    batches run at once; while they run the queue keeps filling, so batches
    grow by themselves under load and stay small (low latency) when idle.

    Backpressure: at most ``max_queue_size`` requests wait (running ones do not
    count); :meth:`submit` beyond that raises :class:`BatchQueueFull` at once
    with a ``retry_after_ms`` from recent batch times. Callers retry later or
    send the request to another replica.

    Timeouts: callers wrap :meth:`submit` in ``asyncio.wait_for``. A request
    cancelled while queued is dropped before its batch runs; one already
    running finishes and its result is discarded. If ``batch_fn`` raises,
    every request of that batch gets the exception.

    Args:
        batch_fn: maps a list of requests to a list of results, same order and
            length; it runs in a worker thread and may block.
        max_batch_size: most requests per call.
        max_queue_delay_ms: longest a request waits for companions (0: take
            whatever is queued on the next loop turn).
        max_queue_size: most waiting requests.
        max_inflight_batches: batch calls that may run at the same time.
        name: label for logs and stats.
    """

    def __init__(
        self,
        batch_fn: Callable[[list[T]], list[R]],
        *,
        max_batch_size: int = 32,
        max_queue_delay_ms: float = 5.0,
        max_queue_size: int = 1024,
        max_inflight_batches: int = 1,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_inflight_batches < 1:
            raise ValueError("batch, queue and in-flight sizes must be >= 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        self.max_queue_size = max_queue_size
        self._batch_fn = batch_fn
        self._queue: deque[_Pending[T, R]] = deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight_batches)
        self._executor = ThreadPoolExecutor(
            max_inflight_batches, thread_name_prefix=f"{name}-batch"
        )
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self.recent: deque[BatchRecord] = deque(maxlen=RECENT_BATCHES)
        self.num_requests = 0
        self.num_batches = 0
        self.num_rejected = 0
        self.num_failed_batches = 0
        self.inflight_batches = 0

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    async def submit(self, item: T) -> R:
        """Queue one request and wait for its result.

        Raises:
            BatchQueueFull: the queue is full; nothing was queued.
            BatcherClosed: the batcher is closed.
            Exception: whatever ``batch_fn`` raised for this request's batch.
        """
        if self._closed:
            raise BatcherClosed("batcher is closed", batcher=self.name)
        if len(self._queue) >= self.max_queue_size:
            self.num_rejected += 1
            raise BatchQueueFull(
                "batch queue is full",
                batcher=self.name,
                retry_after_ms=self._retry_after_ms(),
                queued=len(self._queue),
            )
        loop = asyncio.get_running_loop()
        pending: _Pending[T, R] = _Pending(item, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        self.num_requests += 1
        self._arrived.set()
        if self._dispatcher is None:
            self._dispatcher = loop.create_task(self._dispatch_forever())
        return await pending.future

    async def close(self) -> None:
        """Stop taking requests, fail the queued ones, wait for running batches."""
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    BatcherClosed(
                        "batcher closed before the request ran", batcher=self.name
                    )
                )
        await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=False)

    def stats(self) -> dict[str, Any]:
        """Counters and recent batch figures (sizes, queue waits, run times)."""
        recent = list(self.recent)
        sizes = [r.size for r in recent]
        waits = [r.batch_wait_ms for r in recent]
        runs = [r.inference_ms for r in recent]
        return {
            "name": self.name,
            "requests": self.num_requests,
            "batches": self.num_batches,
            "rejected": self.num_rejected,
            "failed_batches": self.num_failed_batches,
            "queued": self.queued,
            "inflight_batches": self.inflight_batches,
            "recent_batches": len(recent),
            "mean_batch_size": statistics.fmean(sizes) if sizes else 0.0,
            "max_batch_size_seen": max(sizes, default=0),
            "p50_batch_wait_ms": _quantile(waits, 0.5),
            "p95_batch_wait_ms": _quantile(waits, 0.95),
            "p50_inference_ms": _quantile(runs, 0.5),
            "p95_inference_ms": _quantile(runs, 0.95),
        }

    async def _dispatch_forever(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch, wait_ms = await self._gather()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run(batch, wait_ms))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather(self) -> tuple[list[_Pending[T, R]], float]:
        """Wait for a first live request, then for the batch to fill or time out."""
        while True:
            self._drop_cancelled()
            if self._queue:
                break
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].enqueued + self.max_queue_delay_ms / 1000
        while len(self._queue) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
            self._drop_cancelled()
        if self.max_queue_delay_ms <= 0:
            await asyncio.sleep(0)  # let requests sent in the same turn join
        self._drop_cancelled()
        batch = [
            self._queue.popleft()
            for _ in range(min(self.max_batch_size, len(self._queue)))
        ]
        wait_ms = (time.monotonic() - batch[0].enqueued) * 1000 if batch else 0.0
        return batch, wait_ms

    async def _run(self, batch: list[_Pending[T, R]], wait_ms: float) -> None:
        try:
            if not batch:
                return
            self.inflight_batches += 1
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(
                    self._executor, self._batch_fn, [p.item for p in batch]
                )
                if len(results) != len(batch):
                    raise BatchCallError(
                        "batch function returned a wrong count",
                        batcher=self.name,
                        sent=len(batch),
                        got=len(results),
                    )
            except Exception as exc:  # noqa: BLE001 - every caller gets it
                self.num_failed_batches += 1
                log.warning(
                    "batch_failed",
                    batcher=self.name,
                    size=len(batch),
                    error=type(exc).__name__,
                )
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                return
            finally:
                self.inflight_batches -= 1
            inference_ms = (time.perf_counter() - started) * 1000
            self.num_batches += 1
            self.recent.append(BatchRecord(len(batch), wait_ms, inference_ms))
            log.debug(
                "batch_done",
                batcher=self.name,
                size=len(batch),
                batch_wait_ms=round(wait_ms, 2),
                inference_ms=round(inference_ms, 2),
            )
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
        finally:
            self._slots.release()

    def _drop_cancelled(self) -> None:
        if any(p.future.done() for p in self._queue):
            self._queue = deque(p for p in self._queue if not p.future.done())

    def _retry_after_ms(self) -> int:
        runs = [r.inference_ms for r in self.recent]
        per_batch = statistics.fmean(runs) if runs else 100.0
        batches_ahead = -(-len(self._queue) // self.max_batch_size)
        return max(1, round(per_batch * batches_ahead))


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
