"""Stage totals of the sample journey per district, and the minutes kept once read.

Pure arithmetic over :class:`~engine.stage_counts.MinuteCounts`, so it is
tested without a store. A stage's wait is the time its tubes spent in the
stage before (bound to sealed, sealed to dispatched, dispatched to
received, received to tested); "in transit" is dispatched minus received.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.counters import MINUTE_MS
from engine.stage_counts import REGISTERED, STAGES, MinuteCounts

__all__ = [
    "COLUMNS",
    "WAITS",
    "JourneySnapshot",
    "StageMinuteCache",
    "StageTotals",
    "format_wait",
    "merge_totals",
]

COLUMNS = (REGISTERED, "sealed", "in_transit", "received", "tested", "positive")
"""Count columns of the districts page, in journey order."""

WAITS = (
    ("sealed", "collecting"),
    ("dispatched", "at site"),
    ("received", "in transit"),
    ("tested", "at lab"),
)
"""(stage whose wait it is, what the tube was doing meanwhile)."""


@dataclass(frozen=True, slots=True)
class StageTotals:
    """Registrations and each stage over a window, with summed waits."""

    counts: Mapping[str, int] = field(default_factory=dict)
    """Per :data:`~engine.stage_counts.REGISTERED` and each stage."""
    waited_ms: Mapping[str, int] = field(default_factory=dict)
    timed: Mapping[str, int] = field(default_factory=dict)
    """Tubes per stage that carry a wait."""

    @classmethod
    def from_minutes(cls, minutes: Iterable[MinuteCounts]) -> StageTotals:
        """Sum per-minute counts and waits."""
        counts: dict[str, int] = dict.fromkeys((REGISTERED, *STAGES), 0)
        waited: dict[str, int] = dict.fromkeys(STAGES, 0)
        timed: dict[str, int] = dict.fromkeys(STAGES, 0)
        for minute in minutes:
            for name, value in minute.counts.items():
                counts[name] = counts.get(name, 0) + value
            for name, value in minute.waited_ms.items():
                waited[name] = waited.get(name, 0) + value
            for name, value in minute.timed.items():
                timed[name] = timed.get(name, 0) + value
        return cls(counts, waited, timed)

    def count(self, column: str) -> int:
        """A column of :data:`COLUMNS` (or any stage)."""
        if column == "in_transit":
            # A box is received only after it was dispatched; never below 0
            # even while a receipt's count is read before its dispatch's.
            return max(0, self.count("dispatched") - self.count("received"))
        return int(self.counts.get(column, 0))

    def mean_wait_ms(self, stage: str) -> float | None:
        """Mean wait before ``stage``; None where no tube carries one."""
        timed = self.timed.get(stage, 0)
        return self.waited_ms.get(stage, 0) / timed if timed else None


def merge_totals(parts: Iterable[StageTotals]) -> StageTotals:
    """City totals: counts and waits added, so means weigh every tube alike."""
    counts: dict[str, int] = {}
    waited: dict[str, int] = {}
    timed: dict[str, int] = {}
    for part in parts:
        for target, source in (
            (counts, part.counts),
            (waited, part.waited_ms),
            (timed, part.timed),
        ):
            for name, value in source.items():
                target[name] = target.get(name, 0) + value
    return StageTotals(counts, waited, timed)


@dataclass(frozen=True, slots=True)
class JourneySnapshot:
    """The journey columns of every district, taken at one moment."""

    taken_at_ms: int
    round: int
    window_start_ms: int
    districts: Mapping[str, StageTotals]
    errors: Sequence[str] = ()

    @property
    def total(self) -> StageTotals:
        """Every district together."""
        return merge_totals(self.districts.values())


@dataclass
class StageMinuteCache:
    """Per-minute stage counts of one round that need not be read again.

    A minute is kept once it ended ``settle_ms`` before it was read. Sealed,
    tested and positive are counted in the minute a device or lab stamped,
    so they can still gain tubes after that (a collector syncing late, a lab
    uploading yesterday's results): a kept minute is read again once it is
    ``recheck_ms`` old.
    """

    settle_ms: int
    recheck_ms: int
    _minutes: dict[tuple[str, int], tuple[int, MinuteCounts]] = field(
        default_factory=dict
    )

    def get(self, district: str, minute_ms: int, now_ms: int) -> MinuteCounts | None:
        """A kept minute, or None if it must be (re)read."""
        kept = self._minutes.get((district, minute_ms))
        if kept is None or now_ms - kept[0] >= self.recheck_ms:
            return None
        return kept[1]

    def put(self, district: str, counts: MinuteCounts, now_ms: int) -> None:
        """Keep a minute read at ``now_ms`` if it had settled by then."""
        if counts.minute_ms + MINUTE_MS + self.settle_ms <= now_ms:
            self._minutes[(district, counts.minute_ms)] = (now_ms, counts)

    def first_missing(
        self, district: str, minutes: Sequence[int], now_ms: int
    ) -> int | None:
        """The earliest minute of ``minutes`` that must be read, or None."""
        for minute in minutes:
            if self.get(district, minute, now_ms) is None:
                return minute
        return None

    def __len__(self) -> int:
        return len(self._minutes)


def format_wait(wait_ms: float | None) -> str:
    """A mean wait for people: ``45 s``, ``3 min 20 s``, ``2 h 05 min``, or a dash."""
    if wait_ms is None:
        return "–"
    seconds = max(0, round(wait_ms / 1000))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
