"""The Ray actor that hosts district shards: a thin shell around ShardWriter.

One host process serves several logical shards (see :mod:`engine.routing`),
each with its own :class:`~engine.shard.ShardWriter` over one shared store
session. Ray restarts a host that dies; its writers start empty, and the
gateway's retries of unanswered batches are made safe by the writers'
idempotency.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ray
import structlog

from engine.config import Settings
from engine.pii import Keyring, PiiCipher
from engine.registration import Registration
from engine.shard import ShardWriter
from engine.store import CqlStore

__all__ = ["ShardHostActor", "shard_host_name"]

log = structlog.get_logger()


def shard_host_name(index: int) -> str:
    """Ray actor name of shard host ``index``."""
    return f"shard-host-{index}"


@ray.remote(max_restarts=-1, max_task_retries=0)
class ShardHostActor:
    """Hosts the shard writers for a fixed set of logical shards.

    Args:
        index: this host's number.
        shard_ids: logical shards it serves.
        settings: store address, keys file, concurrency.
    """

    def __init__(self, index: int, shard_ids: Sequence[str], settings: Settings):
        self._index = index
        self._store = CqlStore(settings)
        self._store.connect()
        cipher = PiiCipher(Keyring.load(settings.keys_file))
        self._writers = {
            shard_id: ShardWriter(
                self._store, cipher, shard_id, concurrency=settings.cql_concurrency
            )
            for shard_id in shard_ids
        }
        log.info(
            "shard_host_started", host=index, shards=len(shard_ids), pid=os.getpid()
        )

    async def write_batch(
        self, shard_id: str, batch: Sequence[Registration]
    ) -> list[int]:
        """Store one batch on one of this host's shards; outcomes as ints."""
        outcomes = await self._writers[shard_id].write_batch(batch)
        return [int(outcome) for outcome in outcomes]

    def stats(self) -> list[dict[str, Any]]:
        """Counters of every shard on this host."""
        return [writer.stats() for writer in self._writers.values()]

    def pid(self) -> int:
        """Process id, for tests and operators that must find the process."""
        return os.getpid()
