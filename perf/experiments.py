"""Proposed engine changes, tried in the bench's engine process only.

Nothing here changes the engine's files. ``SIEVE_BENCH_PATCHES=name[,name]``
makes :mod:`perf.engine_proc` patch the named behaviour into its own process
before the stack starts, so a proposal's gain can be measured against the
unpatched engine under the same load. Each patch is the smallest code that
shows the proposal; the engine's owners would write the real change.

* ``grow_batches``: :class:`engine.batching.MicroBatcher` cuts a batch when
  its wait ends even if every send slot is busy, so under load a queue of
  tiny batches forms behind the slots (its docstring says batches keep
  growing while they wait). The patch cuts a batch only when a slot is free;
  a finishing send cuts the next one at once.
* ``queue_responses``: :class:`engine.grpc_server._IngestStream` waits for
  each ack with a fresh ``Queue.get`` task and ``asyncio.wait`` on it and the
  reader. The patch wakes the response loop from ``put_nowait`` (and from the
  reader's end) through one future, falling back to ``asyncio.wait`` only
  for the answers still pending when a device stops sending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

__all__ = ["PATCHES", "apply_patches"]

log = structlog.get_logger()


def _grow_batches() -> None:
    from engine.batching import MicroBatcher

    def flush(self: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # With every slot sending, the open batch keeps growing; the next
        # finishing send cuts it (see slot_freed).
        while self._records and self._busy < self._max_busy:
            size = self._max_records
            records, futures = self._records[:size], self._futures[:size]
            self._records, self._futures = self._records[size:], self._futures[size:]
            self._busy += 1
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._dispatch(records, futures))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self._slot_freed())

    def slot_freed(self: Any) -> None:
        self._busy -= 1
        if self._records and (
            self._timer is None or len(self._records) >= self._max_records
        ):
            self._flush()

    original_init = MicroBatcher.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._busy = 0
        self._max_busy = kwargs["max_inflight_batches"]

    MicroBatcher.__init__ = init  # type: ignore[method-assign]
    MicroBatcher._flush = flush  # type: ignore[method-assign]
    MicroBatcher._slot_freed = slot_freed  # type: ignore[attr-defined]


def _queue_responses() -> None:
    from engine import grpc_server

    class KickQueue(asyncio.Queue[Any]):
        waiter: asyncio.Future[None] | None = None

        def put_nowait(self, item: Any) -> None:
            super().put_nowait(item)
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    stream_class: Any = grpc_server._IngestStream
    original_init = stream_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._out = KickQueue()

    async def responses(self: Any, reader: asyncio.Task[None]) -> Any:
        out = self._out
        loop = asyncio.get_running_loop()

        def kick(_: object) -> None:
            if out.waiter is not None and not out.waiter.done():
                out.waiter.set_result(None)

        reader.add_done_callback(kick)
        while True:
            while not out.empty():
                yield out.get_nowait()
            if reader.done():
                if not self._pending:
                    if out.empty():
                        return
                    continue
                # Stream end only: wait for the answers still being made.
                await asyncio.wait(set(self._pending))
                continue
            out.waiter = loop.create_future()
            await out.waiter
            out.waiter = None

    stream_class.__init__ = init
    stream_class.responses = responses


PATCHES = {"grow_batches": _grow_batches, "queue_responses": _queue_responses}


def apply_patches(names: str) -> None:
    """Apply the comma-separated patches; unknown names raise ValueError."""
    for name in filter(None, (part.strip() for part in names.split(","))):
        if name not in PATCHES:
            raise ValueError(f"unknown bench patch {name!r}; known: {sorted(PATCHES)}")
        PATCHES[name]()
        log.warning("bench_patch_applied", patch=name)
