"""A district shard's write path: a batch in, each registration stored once.

The shard is the only writer for the tubes routed to it and so for the
registrations bound to them, which makes a read-then-write check exact
without lightweight transactions, and tube capacity a decision in memory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from cassandra.query import BatchStatement, BatchType, BoundStatement

from engine.counters import MinuteCounter
from engine.exceptions import StoreUnavailable
from engine.pii import PiiCipher
from engine.registration import Outcome, Registration, RejectReason, ShardAnswer
from engine.registration_rows import RegistrationRows
from engine.routing import ShardItem
from engine.store import CqlStore
from engine.tube_book import TubeBook

__all__ = ["ShardWriter"]

log = structlog.get_logger()

READ_CHUNK = 100
"""Ids per IN query: large enough to amortise a request, small enough that
one slow partition does not hold up many."""

WRITE_CHUNK = 64
"""Rows per unlogged batch: about 20 KiB, under the stores' batch warnings."""

_SELECT_ATTEMPTS = (
    "SELECT registration_id, attempt FROM {ks}.registrations WHERE registration_id IN ?"
)


class ShardWriter:
    """Stores a shard host's batches of registrations, each id exactly once.

    A host serves several logical shards; a batch spans them, and each store
    phase below is one pass over the whole batch (a few requests grouped by
    replica) rather than one per shard. Counters stay per logical shard.

    Algorithm, per batch:

    1. Wait until no other batch of this host is writing one of the same ids,
       then claim them (so concurrent batches never race on an id).
    2. Read the stored ``attempt`` of every id (one IN query per group of
       ids sharing a primary replica). Absent: to be written, STORED.
       Present with the same attempt: a retry of a write that already
       finished, STORED. Present with another attempt: DUPLICATE.
    3. Bind each new registration to its tube (:class:`TubeBook`); one the
       tube refuses (unknown, full, sealed, another collector's, another
       round's) is answered with that reason and not written.
    4. Write the index rows (by person, tube, round/district, minute), then
       the main ``registrations`` rows last, so a main row always implies its
       index rows; an interrupted batch leaves no main row and is rewritten
       whole when retried. All writes are idempotent upserts, sent as
       unlogged batches of rows that share a primary replica.

    Backoff: a failed phase is retried ``write_attempts`` times with doubling
    delay from ``retry_backoff_s``; after that :class:`StoreUnavailable` is
    raised and nothing in the batch may be acked as stored. Caps: at most
    ``concurrency`` requests in flight, ``READ_CHUNK`` ids per read and
    ``WRITE_CHUNK`` rows per write request. The caller must treat a timeout as
    "unknown" and resend the same batch (same attempts), never a new one.

    Args:
        store: connected store.
        cipher: seals name and document number.
        shard_ids: the logical shards of the host, e.g. ``120101/0``.
        tubes: the host's tube states.
        concurrency: statements in flight at once.
        write_attempts: tries per phase before giving up.
        retry_backoff_s: first retry delay.
        on_stored: called with each shard's newly stored registrations.
        before_main: awaited with a batch's new registrations before their
            main rows are written (whatever must be durable before an ack).
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        shard_ids: Sequence[str],
        tubes: TubeBook,
        *,
        concurrency: int = 256,
        write_attempts: int = 3,
        retry_backoff_s: float = 0.05,
        on_stored: Callable[[str, list[Registration]], object] | None = None,
        before_main: Callable[[list[ShardItem]], Awaitable[None]] | None = None,
    ) -> None:
        self.shard_ids = list(shard_ids)
        self.counter = MinuteCounter()
        self.num_batches = 0
        self.num_store_errors = 0
        self._counts = {shard: Counter[str]() for shard in self.shard_ids}
        self._shard_of: dict[bytes, str] = {}
        self._tubes = tubes
        self._store = store
        self._cipher = cipher
        self._limit = asyncio.Semaphore(concurrency)
        self._attempts = write_attempts
        self._backoff_s = retry_backoff_s
        self._claims: dict[bytes, asyncio.Event] = {}
        self._select_many = store.prepare(_SELECT_ATTEMPTS)
        self._rows = RegistrationRows(store, cipher)
        self._on_stored = on_stored
        self._before_main = before_main
        self._log = log.bind(shards=len(self.shard_ids))

    async def write_batch(self, items: Sequence[ShardItem]) -> list[ShardAnswer]:
        """Store a batch and return one answer per registration, in order.

        An answer is an :class:`Outcome`, or the tube rule that refused it.

        Raises:
            StoreUnavailable: the store did not take the writes after retries;
                nothing in the batch may be reported stored.
            ValueError: an item names a shard this writer does not serve.
        """
        first: dict[bytes, Registration] = {}
        shard_of: dict[bytes, str] = {}
        batch = []
        for shard_id, record in items:
            if shard_id not in self._counts:
                raise ValueError(f"shard {shard_id} is not served here")
            if first.setdefault(record.registration_id, record) is record:
                shard_of[record.registration_id] = shard_id
            batch.append(record)
        await self._claim(first)
        # Claimed ids belong to this batch alone until released.
        self._shard_of.update(shard_of)
        try:
            outcome_by_id = await self._write_unique(list(first.values()))
        finally:
            self._release(first)
            for key in first:
                self._shard_of.pop(key, None)

        outcomes: list[ShardAnswer] = []
        for record in batch:
            owner = first[record.registration_id]
            if owner is record or owner.attempt == record.attempt:
                outcomes.append(outcome_by_id[record.registration_id])
            else:
                outcomes.append(Outcome.DUPLICATE)
        self.num_batches += 1
        return outcomes

    # TODO: the duplicate check is exact within one shard. A device that
    # resends an id with another tube (or a site in another district) may
    # reach another shard; if both copies are in flight at once, both get
    # index rows (the main row stays single, last write wins). Routing by id
    # alone would close this but lose the tube's single owner.
    async def _claim(self, records: dict[bytes, Registration]) -> None:
        # Loop because another batch may claim an id while we wait on a
        # different one; claiming itself has no await, so it is atomic.
        while True:
            busy = [self._claims[key] for key in records if key in self._claims]
            if not busy:
                break
            await asyncio.gather(*(event.wait() for event in busy))
        for key in records:
            self._claims[key] = asyncio.Event()

    def _release(self, records: dict[bytes, Registration]) -> None:
        for key in records:
            event = self._claims.pop(key, None)
            if event is not None:
                event.set()

    async def _write_unique(
        self, records: list[Registration]
    ) -> dict[bytes, ShardAnswer]:
        stored = await self._retrying("read", lambda: self._read_attempts(records))
        unseen = []
        outcomes: dict[bytes, ShardAnswer] = {}
        for record in records:
            attempt = stored.get(record.registration_id)
            if attempt is None:
                unseen.append(record)
                outcomes[record.registration_id] = Outcome.STORED
            elif attempt == record.attempt:
                outcomes[record.registration_id] = Outcome.STORED
            else:
                outcomes[record.registration_id] = Outcome.DUPLICATE

        fresh = await self._bind(unseen, outcomes)
        if fresh:
            sealed = [self._rows.seal(record) for record in fresh]
            shards = [self._shard_of[record.registration_id] for record in fresh]
            index = self._rows.index(fresh, sealed, shards)
            index += self._tubes.binding_statements(fresh)
            images = self._rows.images(fresh)
            main = self._rows.main(fresh, sealed)
            try:
                await self._retrying(
                    "index", lambda: self._write_grouped(index, images)
                )
                if self._before_main is not None:
                    hook = self._before_main
                    items = [(self._shard_of[r.registration_id], r) for r in fresh]
                    await self._retrying("before_main", lambda: hook(items))
                await self._retrying("main", lambda: self._write_grouped(main))
            except StoreUnavailable:
                # TODO: rows that did reach the store are counted again when
                # the tube is next loaded; if the device never resends, that
                # place in the tube stays taken.
                self._tubes.unbind(fresh)
                raise
            self._tubes.mark_written(fresh)
            for record in fresh:
                self.counter.add(record.district, record.received_at_ms)
            if self._on_stored is not None:
                by_shard: dict[str, list[Registration]] = {}
                for record in fresh:
                    shard = self._shard_of[record.registration_id]
                    by_shard.setdefault(shard, []).append(record)
                for shard, part in by_shard.items():
                    self._on_stored(shard, part)
        for key, answer in outcomes.items():
            counts = self._counts[self._shard_of[key]]
            if answer is Outcome.STORED:
                counts["num_stored"] += 1
            elif answer is Outcome.DUPLICATE:
                counts["num_duplicate"] += 1
            else:
                counts["num_tube_refused"] += 1
        self._log.debug("batch_written", records=len(records), fresh=len(fresh))
        return outcomes

    async def _bind(
        self, records: list[Registration], outcomes: dict[bytes, ShardAnswer]
    ) -> list[Registration]:
        """Bind new registrations to their tubes; the refused get their reason."""
        if not records:
            return []
        await self._retrying("tubes", lambda: self._tubes.load(r.tube for r in records))
        bound = []
        for record in records:
            refused: RejectReason | None = self._tubes.bind(record)
            if refused is None:
                bound.append(record)
            else:
                outcomes[record.registration_id] = refused
        return bound

    async def _retrying(self, phase: str, make: Any) -> Any:
        delay_s = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return await make()
            except StoreUnavailable as exc:
                self.num_store_errors += 1
                if attempt == self._attempts:
                    self._log.warning(
                        "store_write_failed",
                        phase=phase,
                        attempts=attempt,
                        error=str(exc),
                        next="batch answered RETRY",
                    )
                    raise
                self._log.warning(
                    "store_write_retry",
                    phase=phase,
                    attempt=attempt,
                    retry_in_ms=int(delay_s * 1000),
                    error=str(exc),
                )
                await asyncio.sleep(delay_s)
                delay_s *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_attempts(self, records: list[Registration]) -> dict[bytes, bytes]:
        # One IN query per replica group: the coordinator owns every id asked.
        # A uuid partition key serialises to its 16 bytes: the routing key.
        groups = self._store.group_by_replica(
            [r.registration_id for r in records],
            chunk=READ_CHUNK,
            routing_key=lambda key: key,
        )
        results = await self._gather(
            self._store.execute(
                self._select_many,
                ([uuid.UUID(bytes=key) for key in group],),
                profile="ingest_tuples",
            )
            for group in groups
        )
        return {
            registration_id.bytes: attempt.bytes
            for rows in results
            for registration_id, attempt in rows
            if attempt is not None
        }

    async def _write_grouped(
        self, statements: list[BoundStatement], alone: Sequence[BoundStatement] = ()
    ) -> None:
        # Rows that share a primary replica travel in one unlogged batch: one
        # request applied locally by that replica, instead of one per row.
        # Photos (~100 KiB each) go ``alone``: batched they pass the stores'
        # batch size limits.
        batches: list[Any] = list(alone)
        for group in self._store.group_by_replica(statements, chunk=WRITE_CHUNK):
            if len(group) == 1:
                batches.append(group[0])
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for statement in group:
                batch.add(statement)
            batches.append(batch)
        await self._gather(
            self._store.execute(batch, profile="ingest") for batch in batches
        )

    async def _gather(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        async def limited(call: Awaitable[Any]) -> Any:
            async with self._limit:
                return await call

        return await asyncio.gather(*(limited(call) for call in calls))

    def stats(self) -> list[dict[str, Any]]:
        """Counters per logical shard, then the writer's own, for metrics.

        Every figure appears in one entry only, so entries can be summed.
        """
        shards: list[dict[str, Any]] = [
            {
                "shard": shard,
                "num_stored": counts["num_stored"],
                "num_duplicate": counts["num_duplicate"],
                "num_tube_refused": counts["num_tube_refused"],
            }
            for shard, counts in self._counts.items()
        ]
        writer = {
            "num_batches": self.num_batches,
            "num_store_errors": self.num_store_errors,
            "curr_claimed_ids": len(self._claims),
        }
        return [*shards, writer]
