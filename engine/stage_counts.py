"""How far a round's samples got, per district and minute: counts and mean waits.

A minute's count of a stage is the size of its ``stage_by_minute`` partition
``(round, district, stage, minute)``; registrations come from
``registrations_by_minute`` the same way. Each partition is read with one
aggregate query (``COUNT(*)``, ``SUM(waited_ms)``), so only partitions that a
round, a district and a minute window name are touched. ``waited_ms`` is the
time a tube spent in the stage before (bound to sealed, sealed to dispatched,
dispatched to received, received to tested), so a stage's mean wait is its
summed ``waited_ms`` over the tubes that carry one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.counters import MINUTE_MS, minute_of
from engine.store import CqlStore

__all__ = [
    "REGISTERED",
    "STAGES",
    "DistrictCounts",
    "MinuteCounts",
    "StageCounter",
]

REGISTERED = "registered"
"""The column name of registrations in counts."""
STAGES = ("sealed", "dispatched", "received", "tested", "positive")
"""Stages recorded per minute, in journey order."""
MAX_MINUTES = 7 * 24 * 60
"""Longest window one call reads (a week of minutes)."""

_STAGE = (
    "SELECT COUNT(*) AS num, SUM(waited_ms) AS waited, COUNT(waited_ms) AS timed"
    " FROM {ks}.stage_by_minute"
    " WHERE round = ? AND district = ? AND stage = ? AND minute = ?"
)
_REGISTERED = (
    "SELECT COUNT(*) AS num FROM {ks}.registrations_by_minute"
    " WHERE round = ? AND district = ? AND minute = ?"
)
_ROUND_MINUTES = "SELECT minute FROM {ks}.round_minutes WHERE round = %s"


@dataclass
class MinuteCounts:
    """One minute of one district: how many reached each stage in it."""

    minute_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    """Per :data:`REGISTERED` and each of :data:`STAGES`."""
    waited_ms: dict[str, int] = field(default_factory=dict)
    """Summed waits per stage."""
    timed: dict[str, int] = field(default_factory=dict)
    """Tubes per stage that carry a wait."""


@dataclass
class DistrictCounts:
    """A district's minutes in a window, and their totals."""

    round: int
    district: str
    minutes: list[MinuteCounts] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        """Registrations and each stage over the whole window."""
        return {
            name: sum(m.counts.get(name, 0) for m in self.minutes)
            for name in (REGISTERED, *STAGES)
        }

    @property
    def mean_waited_ms(self) -> dict[str, float | None]:
        """Mean time spent before each stage; None where no tube has a wait."""
        means: dict[str, float | None] = {}
        for stage in STAGES:
            timed = sum(m.timed.get(stage, 0) for m in self.minutes)
            waited = sum(m.waited_ms.get(stage, 0) for m in self.minutes)
            means[stage] = waited / timed if timed else None
        return means

    def busy_minutes(self) -> list[MinuteCounts]:
        """Minutes in which anything happened."""
        return [m for m in self.minutes if any(m.counts.values())]


class StageCounter:
    """Reads per-minute stage counts of named partitions, many at a time.

    A district's window of ``n`` minutes is ``6 n`` single-partition
    aggregate reads, at most ``concurrency`` in flight; a 12-hour window is
    4,320 reads. Reads use the ``lookup`` profile (one replica, the read
    timeout of the settings): counts are for watching, and a failed read
    raises :class:`~engine.exceptions.StoreUnavailable`, so the caller may
    ask again. Windows longer than :data:`MAX_MINUTES` are refused.

    Args:
        store: connected store.
        concurrency: partition reads in flight at once.
    """

    def __init__(self, store: CqlStore, *, concurrency: int = 64) -> None:
        self._store = store
        self._limit = asyncio.Semaphore(concurrency)

    async def district(
        self, round_no: int, district: str, first_ms: int, last_ms: int
    ) -> DistrictCounts:
        """Counts of one district for every minute from ``first_ms`` to ``last_ms``.

        Raises:
            ValueError: the window is reversed or longer than :data:`MAX_MINUTES`.
            StoreUnavailable: a read failed.
        """
        # TODO: finished minutes are read again on every call (nothing caches
        # them), so a long window costs six reads a minute each time.
        minutes = _minutes(first_ms, last_ms)
        stage = self._store.prepare(_STAGE)
        registered = self._store.prepare(_REGISTERED)
        reads: list[Any] = []
        for minute in minutes:
            reads.append(self._read(registered, (round_no, district, minute)))
            reads.extend(
                self._read(stage, (round_no, district, name, minute)) for name in STAGES
            )
        rows = await asyncio.gather(*reads)

        result = DistrictCounts(round_no, district)
        width = 1 + len(STAGES)
        for index, minute in enumerate(minutes):
            part = rows[index * width : (index + 1) * width]
            counts = MinuteCounts(minute, {REGISTERED: int(part[0].num)})
            for name, row in zip(STAGES, part[1:], strict=True):
                counts.counts[name] = int(row.num)
                counts.waited_ms[name] = int(row.waited or 0)
                counts.timed[name] = int(row.timed or 0)
            result.minutes.append(counts)
        return result

    async def districts(
        self, round_no: int, districts: Iterable[str], first_ms: int, last_ms: int
    ) -> dict[str, DistrictCounts]:
        """:meth:`district` for several districts at once."""
        names = list(districts)
        found = await asyncio.gather(
            *(self.district(round_no, d, first_ms, last_ms) for d in names)
        )
        return dict(zip(names, found, strict=True))

    def round_window(self, round_no: int) -> tuple[int, int] | None:
        """First and last minute holding registrations of a round, or None.

        Read from ``round_minutes``, one partition per round. Stages go on
        after the last registration, so callers extend the end (for example
        to now).
        """
        rows = self._store.execute_sync(_ROUND_MINUTES, (round_no,), profile="lookup")
        minutes = [_ms(row.minute) for row in rows]
        if not minutes:
            return None
        return min(minutes), max(minutes)

    async def _read(self, statement: Any, params: Sequence[Any]) -> Any:
        async with self._limit:
            rows = await self._store.execute(statement, params, profile="lookup")
        return rows[0]


def _minutes(first_ms: int, last_ms: int) -> list[int]:
    first, last = minute_of(first_ms), minute_of(last_ms)
    if last < first:
        raise ValueError("the window ends before it starts")
    count = (last - first) // MINUTE_MS + 1
    if count > MAX_MINUTES:
        raise ValueError(f"window of {count} minutes is over {MAX_MINUTES}")
    return [first + index * MINUTE_MS for index in range(count)]


def _ms(value: dt.datetime) -> int:
    # The driver hands back naive datetimes in UTC.
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)
