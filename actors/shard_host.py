"""The Ray actor that hosts district shards: a thin shell around ShardWriter.

One host process serves several logical shards (see :mod:`engine.routing`)
through one :class:`~engine.shard.ShardWriter`, which writes each batch in
one pass over the store, and one :class:`~engine.journey_shard.JourneyShard`
for their tubes and boxes. Ray restarts a host that dies; its state starts
empty and is reloaded from the store, and the gateway's retries of
unanswered batches are made safe by the writer's idempotency.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import ray
import structlog

from actors.ocr_pool import OcrActorPool, find_ocr_actors
from engine.box_keeper import BoxKeeper
from engine.config import Settings
from engine.exceptions import StoreUnavailable
from engine.journey import Step, StepAnswer
from engine.journey_shard import JourneyShard
from engine.logs import configure_logging
from engine.participation import ParticipationTracker
from engine.pii import Keyring, PiiCipher
from engine.registration import Outcome, Registration, encode_answer
from engine.routing import ShardItem
from engine.shard import ShardWriter
from engine.store import CqlStore
from engine.tube_book import TubeBook
from engine.verification import OcrVerifier

__all__ = ["ShardHostActor", "read_host_stats", "shard_host_name"]

log = structlog.get_logger()


def shard_host_name(index: int) -> str:
    """Ray actor name of shard host ``index``."""
    return f"shard-host-{index}"


HOST_STATS_TIMEOUT_S = 2.0
"""How long a stats read waits for a host; a busy or restarting host is shown
as not answering rather than holding up the whole reading."""


async def read_host_stats(
    handles: Sequence[Any],
) -> list[list[dict[str, Any]] | None]:
    """Every host's :meth:`ShardHostActor.stats`, None where it did not answer."""

    async def one(handle: Any) -> list[dict[str, Any]] | None:
        try:
            result: list[dict[str, Any]] = await asyncio.wait_for(
                handle.stats.remote(), HOST_STATS_TIMEOUT_S
            )
        except (TimeoutError, ray.exceptions.RayError):
            return None
        return result

    return list(await asyncio.gather(*(one(handle) for handle in handles)))


@ray.remote(max_restarts=-1, max_task_retries=0)
class ShardHostActor:
    """Hosts the shard writers for a fixed set of logical shards.

    Args:
        index: this host's number.
        shard_ids: logical shards it serves.
        settings: store address, keys file, concurrency.
    """

    def __init__(self, index: int, shard_ids: Sequence[str], settings: Settings):
        configure_logging()
        self._index = index
        self._store = CqlStore(settings)
        self._store.connect()
        cipher = PiiCipher(Keyring.load(settings.keys_file))
        self._verifier: OcrVerifier | None = None
        if settings.ocr_actors > 0:
            actors = find_ocr_actors(settings.ocr_actors, settings.ray_namespace)
            self._verifier = OcrVerifier(self._store, cipher, OcrActorPool(actors))
        self._participation = ParticipationTracker(self._store, cipher, shard_ids)
        on_stored = self._on_stored
        self._tubes = TubeBook(self._store)
        self._boxes = BoxKeeper(self._store)
        self._journey = JourneyShard(self._store, self._tubes, self._boxes)
        self._writer = ShardWriter(
            self._store,
            cipher,
            shard_ids,
            self._tubes,
            concurrency=settings.cql_concurrency,
            on_stored=on_stored,
            before_main=self._participation.ensure_markers,
        )
        self._shard_ids = frozenset(shard_ids)
        self._sweep_s = settings.ocr_sweep_s
        self._sweeper: asyncio.Task[None] | None = None
        if self._verifier is not None:
            # Async actors construct inside their running loop; the sweep
            # also resumes whatever a previous incarnation left pending.
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        # Recovers this host's round participation, then flushes it.
        self._participation_task = asyncio.get_running_loop().create_task(
            self._participation.run()
        )
        log.info(
            "shard_host_started", host=index, shards=len(shard_ids), pid=os.getpid()
        )

    def _on_stored(self, shard_id: str, fresh: list[Registration]) -> None:
        self._participation.observe(shard_id, fresh)
        if self._verifier is not None:
            self._verifier.submit(shard_id, fresh)

    async def flush_participation(self) -> int:
        """Flush round participation now, after recovery; parts written."""
        return await self._participation.flush()

    async def write_batch(self, items: Sequence[ShardItem]) -> list[int]:
        """Store a batch spanning this host's shards; answers as ints, in order.

        See :func:`engine.registration.encode_answer` for the encoding.
        """
        try:
            answers = await self._writer.write_batch(items)
        except StoreUnavailable:
            # Nothing of the batch may be acked as stored; the gateway answers
            # RETRY and devices resend (the writes are idempotent).
            return [int(Outcome.RETRY)] * len(items)
        return [encode_answer(answer) for answer in answers]

    async def journey(
        self, shard_id: str, steps: Sequence[Step]
    ) -> list[list[StepAnswer]]:
        """Apply journey steps of one of this host's shards.

        Steps on different tubes or boxes run concurrently; steps on the same
        one keep their order (its lock is taken first come, first served).
        """
        if shard_id not in self._shard_ids:
            raise ValueError(f"shard {shard_id} is not served by this host")
        return list(await asyncio.gather(*(self._journey.apply(s) for s in steps)))

    async def _sweep(self) -> None:
        assert self._verifier is not None
        while True:
            for shard_id in sorted(self._shard_ids):
                try:
                    await self._verifier.sweep(shard_id)
                except Exception:  # the sweep must outlive any one error
                    log.exception("ocr_sweep_failed", shard=shard_id)
            await asyncio.sleep(self._sweep_s)

    def stats(self) -> list[dict[str, Any]]:
        """Counters of every shard on this host, and of its OCR verifier."""
        stats = self._writer.stats()
        stats.append(
            {
                "host": self._index,
                "pid": os.getpid(),
                "store_latency": self._store.latency.snapshot(),
            }
        )
        stats.append(self._participation.stats())
        stats.append(
            {**self._journey.stats(), **self._tubes.stats(), **self._boxes.stats()}
        )
        if self._verifier is not None:
            stats.append(
                {
                    "ocr_num_verified": self._verifier.num_verified,
                    "ocr_num_deferred": self._verifier.num_deferred,
                    "ocr_num_failed": self._verifier.num_failed,
                    "ocr_curr_queued": self._verifier.curr_queued,
                }
            )
        return stats

    def layout(self) -> tuple[str, list[str]]:
        """The keyspace and the logical shards this host was created with."""
        return self._store.keyspace, sorted(self._shard_ids)

    def pid(self) -> int:
        """Process id, for tests and operators that must find the process."""
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this host runs on."""
        return str(ray.get_runtime_context().get_node_id())
