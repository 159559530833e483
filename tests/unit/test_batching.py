"""Per-shard micro-batching: size, wait and in-flight bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.batching import MicroBatcher
from engine.exceptions import StoreUnavailable
from engine.registration import Outcome, Registration


def _record(index: int) -> Registration:
    return Registration(
        registration_id=index.to_bytes(16, "big"),
        round=1,
        tube="T00001",
        name="张三",
        doc_type=1,
        doc_number="11010519491231002X",
        site="s",
        district="120101",
        device="d",
        collector="c",
        captured_at_ms=0,
        received_at_ms=0,
        attempt=b"\0" * 16,
    )


class RecordingSender:
    """A send function that records batches and releases them on demand."""

    def __init__(self) -> None:
        self.batches: list[list[Registration]] = []
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None
        self.num_running = 0
        self.max_running = 0

    async def __call__(
        self, target: int, batch: Sequence[Registration]
    ) -> list[Outcome]:
        self.batches.append(list(batch))
        self.num_running += 1
        self.max_running = max(self.max_running, self.num_running)
        try:
            await self.release.wait()
        finally:
            self.num_running -= 1
        if self.fail_with is not None:
            raise self.fail_with
        return [Outcome.STORED] * len(batch)


@pytest.mark.parametrize("wait_s", [0.0, 30.0])
async def test_full_batch_is_sent_without_waiting(wait_s: float) -> None:
    """A batch that reaches max_records goes at once, whatever the wait."""
    sender = RecordingSender()
    batcher = MicroBatcher(
        0, sender, max_records=4, wait_s=wait_s, max_inflight_batches=2
    )
    waiters = [asyncio.ensure_future(batcher.submit(_record(i))) for i in range(4)]
    await asyncio.sleep(0)  # let the submits run
    await asyncio.sleep(0)  # let the dispatch task start
    assert [4] == [len(b) for b in sender.batches]
    sender.release.set()
    assert [Outcome.STORED] * 4 == await asyncio.gather(*waiters)


async def test_partial_batch_is_sent_after_the_wait() -> None:
    """Fewer than max_records go once the wait elapses (zero wait: next turn)."""
    sender = RecordingSender()
    sender.release.set()
    batcher = MicroBatcher(
        0, sender, max_records=100, wait_s=0.0, max_inflight_batches=2
    )
    results = await asyncio.gather(*(batcher.submit(_record(i)) for i in range(3)))
    assert [3] == [len(b) for b in sender.batches]
    assert [Outcome.STORED] * 3 == results


async def test_inflight_batches_are_capped() -> None:
    """No more than max_inflight_batches sends run at once."""
    sender = RecordingSender()
    batcher = MicroBatcher(0, sender, max_records=1, wait_s=0.0, max_inflight_batches=2)
    waiters = [asyncio.ensure_future(batcher.submit(_record(i))) for i in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert 2 == sender.max_running
    sender.release.set()
    await asyncio.gather(*waiters)
    assert 2 == sender.max_running
    assert 5 == batcher.num_records


async def test_failed_send_fails_every_waiter_of_that_batch() -> None:
    """A store failure reaches each registration of the batch as an exception."""
    sender = RecordingSender()
    sender.fail_with = StoreUnavailable("down")
    sender.release.set()
    batcher = MicroBatcher(
        0, sender, max_records=10, wait_s=0.0, max_inflight_batches=1
    )
    results = await asyncio.gather(
        *(batcher.submit(_record(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert 0 == batcher.curr_waiting


async def test_busy_slots_let_the_next_batch_grow() -> None:
    """With every slot busy, arrivals gather and go as one batch when one frees.

    Regression: cutting on the timer while slots were busy queued many batches
    of one or two registrations, each paying a full store round trip.
    """
    sender = RecordingSender()
    batcher = MicroBatcher(
        0, sender, max_records=100, wait_s=0.0, max_inflight_batches=1
    )
    first = asyncio.ensure_future(batcher.submit(_record(0)))
    for _ in range(3):
        await asyncio.sleep(0)
    later = []
    for i in range(1, 6):  # one arrival per loop turn: the zero wait expires
        later.append(asyncio.ensure_future(batcher.submit(_record(i))))
        for _ in range(3):
            await asyncio.sleep(0)
    assert [1] == [len(b) for b in sender.batches]

    sender.release.set()
    await asyncio.gather(first, *later)

    assert [1, 5] == [len(b) for b in sender.batches]
