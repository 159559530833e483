"""Where a round starts and the previous round's per-minute curve.

Both come from the ``round_minutes`` index (migration 0006): one row per
(round, minute, district) that holds registrations. A round's start is its
first such minute, unless configured. The previous round's curve is the size
of each listed ``registrations_by_minute`` partition, counted once and kept.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cassandra.concurrent import execute_concurrent_with_args

from console.minute_cache import MinuteCountCache
from engine.counters import MINUTE_MS, minute_of
from engine.store import CqlStore

__all__ = ["RoundCurve", "RoundMinutes", "align"]

_FIRST_MINUTE = "SELECT minute FROM {ks}.round_minutes WHERE round = ? LIMIT 1"
_MINUTES = "SELECT minute, district FROM {ks}.round_minutes WHERE round = ?"
_COUNT_MINUTE = (
    "SELECT COUNT(*) FROM {ks}.registrations_by_minute"
    " WHERE round = ? AND district = ? AND minute = ?"
)

PREVIOUS_REFRESH_S = 60.0
"""How often the previous round's curve is re-read: it is over, so rarely."""


@dataclass(frozen=True, slots=True)
class RoundCurve:
    """A round's registrations per minute, keyed by minutes since its start."""

    round: int
    start_ms: int
    by_offset: Mapping[int, int]

    @property
    def total(self) -> int:
        """Registrations of the round."""
        return sum(self.by_offset.values())


def align(per_minute: Mapping[int, int], start_ms: int) -> dict[int, int]:
    """Re-key epoch-minute counts by whole minutes since ``start_ms``.

    Minutes before the start are dropped (they belong to no round view).
    """
    start = minute_of(start_ms)
    return {
        (minute - start) // MINUTE_MS: count
        for minute, count in sorted(per_minute.items())
        if minute >= start
    }


# TODO: rounds stored before migration 0006 have no round_minutes rows, so
# they show no overlay and their start falls back to the configured one or
# the gateway's; back-filling the index would need one scan of each round.
class RoundMinutes:
    """Reads the round index and counts a past round's minutes.

    Args:
        store: connected store on the engine's keyspace.
        settle_ms: a minute's count is kept once it ended this long ago.
    """

    def __init__(self, store: CqlStore, settle_ms: int) -> None:
        self._store = store
        self._cache = MinuteCountCache(settle_ms=settle_ms)
        self._curve: RoundCurve | None = None
        self._curve_at_s = 0.0

    def first_minute(self, round_number: int) -> int | None:
        """The round's first minute with registrations (epoch ms), or None."""
        statement = self._store.prepare(_FIRST_MINUTE)
        row = self._store.session.execute(
            statement, (round_number,), execution_profile="lookup"
        ).one()
        return None if row is None else _epoch_ms(row.minute)

    def curve(
        self, round_number: int, start_ms: int | None, now_ms: int
    ) -> RoundCurve | None:
        """The round's per-minute curve from its start; None if it is empty.

        Args:
            round_number: which round.
            start_ms: configured start, or None for its first minute.
            now_ms: now, to judge which minutes are settled.
        """
        cached = self._curve
        fresh = time.monotonic() - self._curve_at_s < PREVIOUS_REFRESH_S
        if cached is not None and cached.round == round_number and fresh:
            return cached
        statement = self._store.prepare(_MINUTES)
        pairs = [
            (row.district, _epoch_ms(row.minute))
            for row in self._store.session.execute(
                statement, (round_number,), execution_profile="lookup"
            )
        ]
        if not pairs:
            return None
        counts = self._counts(round_number, pairs, now_ms)
        start = start_ms if start_ms else min(minute for _, minute in pairs)
        per_minute: dict[int, int] = {}
        for (_, minute), count in zip(pairs, counts, strict=True):
            per_minute[minute] = per_minute.get(minute, 0) + count
        curve = RoundCurve(round_number, minute_of(start), align(per_minute, start))
        self._curve, self._curve_at_s = curve, time.monotonic()
        return curve

    def _counts(
        self, round_number: int, pairs: list[tuple[str, int]], now_ms: int
    ) -> list[int]:
        read: dict[tuple[str, int], int] = {}
        missing = [p for p in pairs if self._cache.get(*p) is None]
        if missing:
            answers = execute_concurrent_with_args(
                self._store.session,
                self._store.prepare(_COUNT_MINUTE),
                [(round_number, district, minute) for district, minute in missing],
                concurrency=64,
                raise_on_first_error=True,
            )
            for pair, answer in zip(missing, answers, strict=True):
                read[pair] = int(answer.result_or_exc.one()[0])
                self._cache.put(*pair, read[pair], now_ms)
        return [read.get(p, self._cache.get(*p) or 0) for p in pairs]


def _epoch_ms(value: dt.datetime) -> int:
    # The driver returns naive UTC datetimes for timestamps.
    return round(value.replace(tzinfo=dt.UTC).timestamp() * 1000)
