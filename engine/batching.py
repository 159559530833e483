"""Micro-batching of registrations per shard host, bounded in size, wait and flight.

One Ray call per registration cannot keep up (about 1,700 calls/s from one
caller); one call per hundred registrations moves over 100k/s. So the gateway
gathers registrations from all devices into one batch per shard host (the unit
of a Ray call); the host splits it among its district shards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from engine.registration import ShardAnswer

__all__ = ["MicroBatcher", "SendBatch"]

Item = TypeVar("Item")
SendBatch = Callable[[int, Sequence[Item]], Awaitable[list[ShardAnswer]]]


class MicroBatcher(Generic[Item]):
    """Gathers items for one target and sends them as batches.

    Algorithm: a registration joins the open batch. The batch is sent when it
    holds ``max_records``, or ``wait_s`` after its first registration arrived,
    whichever comes first (``wait_s == 0`` sends on the next loop turn, which
    still gathers everything that arrived in the same turn). At most
    ``max_inflight_batches`` sends run at once. A batch is cut only when a
    send slot is free: while all are busy, registrations keep gathering, and
    the moment a send finishes the next batch (up to ``max_records``) goes.
    Cutting on the timer regardless would queue many tiny batches behind the
    busy slots, each paying a full store round trip.

    Backpressure is not this class's job: the gateway bounds how many
    registrations exist at all. A failed send fails every registration in
    that batch with the send's exception; the caller decides whether to
    answer RETRY.

    Args:
        target: the shard host this batcher feeds.
        send: coroutine that stores one batch and returns its outcomes.
        max_records: largest batch.
        wait_s: longest time a registration waits for its batch to fill.
        max_inflight_batches: concurrent sends.
    """

    def __init__(
        self,
        target: int,
        send: SendBatch[Item],
        *,
        max_records: int,
        wait_s: float,
        max_inflight_batches: int,
    ) -> None:
        self.target = target
        self.num_batches = 0
        self.num_records = 0
        self.curr_waiting = 0
        self._send = send
        self._max_records = max_records
        self._wait_s = wait_s
        self._max_inflight = max_inflight_batches
        self.curr_inflight_batches = 0
        self._records: list[Item] = []
        self._futures: list[asyncio.Future[ShardAnswer]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, record: Item) -> ShardAnswer:
        """Add an item to the next batch and wait for its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ShardAnswer] = loop.create_future()
        self._records.append(record)
        self._futures.append(future)
        self.curr_waiting += 1
        if len(self._records) >= self._max_records:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._records and self.curr_inflight_batches < self._max_inflight:
            cut = self._max_records
            records, futures = self._records[:cut], self._futures[:cut]
            del self._records[:cut], self._futures[:cut]
            self.curr_inflight_batches += 1
            task = asyncio.get_running_loop().create_task(
                self._dispatch(records, futures)
            )
            # Keep a reference: the loop holds tasks weakly.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(
        self, records: list[Item], futures: list[asyncio.Future[ShardAnswer]]
    ) -> None:
        try:
            outcomes = await self._send(self.target, records)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self.curr_waiting -= len(records)
            self.curr_inflight_batches -= 1
            # A slot is free: whatever gathered meanwhile goes now.
            self._flush()
        self.num_batches += 1
        self.num_records += len(records)
        for future, outcome in zip(futures, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def drain(self) -> None:
        """Send whatever is open and wait for every send in flight."""
        self._flush()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
