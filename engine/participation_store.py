"""Participation in the store: flushed parts, round markers, and replay reads.

Parts live in ``participation_parts`` (one row per round, district and
shard); the rounds a shard has seen in ``participation_rounds``. Replay
reads the registrations of a district received in a time range back from
``registrations_by_minute`` and the main rows, for recovery after a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any, NamedTuple

from engine.counters import minute_of
from engine.participation_state import Participation
from engine.store import CqlStore

__all__ = ["Marker", "ParticipationStore", "StoredPart", "new_marker"]

MINUTE_MS = 60_000
READ_CHUNK = 100
"""Registration ids per IN query during replay."""
_MAX_WRITE_TIME_US = 1 << 62

_INSERT_PART = (
    "INSERT INTO {ks}.participation_parts (round, district, shard,"
    " registry_version, residents, visitors, sampled, watermark_ms, flushed_at)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)
_TOUCH_PART = (
    "UPDATE {ks}.participation_parts SET watermark_ms = ?"
    " WHERE round = ? AND district = ? AND shard = ?"
)
_SELECT_PARTS = (
    "SELECT shard, registry_version, residents, visitors, watermark_ms"
    " FROM {ks}.participation_parts WHERE round = ? AND district = ?"
)
_INSERT_MARKER = (
    "INSERT INTO {ks}.participation_rounds (district, round, shard, first_seen_ms)"
    " VALUES (?,?,?,?) USING TIMESTAMP ?"
)
_SELECT_MARKERS = (
    "SELECT district, round, shard, first_seen_ms FROM {ks}.participation_rounds"
    " WHERE district = ?"
)
_SELECT_ALL_MARKERS = (
    "SELECT district, round, shard, first_seen_ms FROM {ks}.participation_rounds"
)
_SELECT_MINUTE = (
    "SELECT registration_id FROM {ks}.registrations_by_minute"
    " WHERE round = ? AND district = ? AND minute = ?"
)
_SELECT_HASHES = (
    "SELECT registration_id, doc_hash FROM {ks}.registrations"
    " WHERE registration_id IN ?"
)


class Marker(NamedTuple):
    """A shard saw a round in a district, first at ``first_seen_ms``."""

    district: str
    round: int
    shard: str
    first_seen_ms: int


class StoredPart(NamedTuple):
    """A flushed part and the time up to which it is complete."""

    part: Participation
    watermark_ms: int


class ParticipationStore:
    """Reads and writes participation rows.

    Args:
        store: connected store.
        concurrency: requests in flight for multi-request reads.
    """

    def __init__(self, store: CqlStore, *, concurrency: int = 32) -> None:
        self._store = store
        self._limit = asyncio.Semaphore(concurrency)

    async def write_part(
        self,
        round_no: int,
        district: str,
        shard: str,
        part: Participation,
        watermark_ms: int,
    ) -> None:
        """Replace a shard's stored part with ``part``."""
        residents, visitors = part.to_blobs()
        await self._store.execute(
            self._store.prepare(_INSERT_PART),
            (
                round_no,
                district,
                shard,
                part.version,
                residents,
                visitors,
                part.sampled,
                watermark_ms,
                int(time.time() * 1000),
            ),
            profile="ingest",
        )

    async def touch_part(
        self, round_no: int, district: str, shard: str, watermark_ms: int
    ) -> None:
        """Advance the watermark of a stored part that has not changed since."""
        await self._store.execute(
            self._store.prepare(_TOUCH_PART),
            (watermark_ms, round_no, district, shard),
            profile="ingest",
        )

    async def write_marker(self, marker: Marker) -> None:
        """Record that a shard saw a round; the earliest first_seen_ms stays.

        The write time falls as first_seen_ms grows, so under the stores'
        last-write-wins a later incarnation's marker never replaces an
        earlier one.
        """
        write_time_us = _MAX_WRITE_TIME_US - marker.first_seen_ms * 1000
        await self._store.execute(
            self._store.prepare(_INSERT_MARKER),
            (*marker, write_time_us),
            profile="ingest",
        )

    async def markers(self, districts: Iterable[str] | None = None) -> list[Marker]:
        """Markers of the given districts, or of every district."""
        if districts is None:
            rows = await self._store.execute(
                self._store.prepare(_SELECT_ALL_MARKERS), profile="admin"
            )
        else:
            statement = self._store.prepare(_SELECT_MARKERS)
            results = await self._gather(
                self._store.execute(statement, (d,), profile="admin") for d in districts
            )
            rows = [row for result in results for row in result]
        return [
            Marker(row.district, row.round, row.shard, row.first_seen_ms)
            for row in rows
        ]

    async def parts(self, round_no: int, district: str) -> dict[str, StoredPart]:
        """Every shard's stored part of a round in a district."""
        rows = await self._store.execute(
            self._store.prepare(_SELECT_PARTS), (round_no, district), profile="admin"
        )
        return {
            row.shard: StoredPart(
                Participation.from_blobs(
                    row.registry_version or 0,
                    bytes(row.residents or b""),
                    bytes(row.visitors or b""),
                ),
                int(row.watermark_ms),
            )
            for row in rows
        }

    async def replay(
        self, round_no: int, district: str, from_ms: int, to_ms: int
    ) -> list[bytes]:
        """Look-up hashes of registrations received from ``from_ms`` to ``to_ms``.

        Only registrations whose main row is stored (so possibly acked) are
        returned; one with index rows only was never acked and will be
        written, and seen, again when its device resends it.
        """
        minute = self._store.prepare(_SELECT_MINUTE)
        first, last = minute_of(from_ms), minute_of(to_ms)
        minutes = await self._gather(
            self._store.execute(minute, (round_no, district, m), profile="admin")
            for m in range(first, last + MINUTE_MS, MINUTE_MS)
        )
        ids = [row.registration_id for rows in minutes for row in rows]
        select = self._store.prepare(_SELECT_HASHES)
        groups = [ids[i : i + READ_CHUNK] for i in range(0, len(ids), READ_CHUNK)]
        results = await self._gather(
            self._store.execute(select, (group,), profile="admin") for group in groups
        )
        return [
            bytes(row.doc_hash)
            for rows in results
            for row in rows
            if row.doc_hash is not None
        ]

    async def _gather(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        async def limited(call: Awaitable[Any]) -> Any:
            async with self._limit:
                return await call

        return list(await asyncio.gather(*(limited(c) for c in calls)))


def new_marker(district: str, round_no: int, shard: str) -> Marker:
    """A marker first seen now."""
    return Marker(district, round_no, shard, int(time.time() * 1000))
