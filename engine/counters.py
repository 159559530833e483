"""Per-minute counts of registrations per district, kept in memory for live views.

The store holds the exact counts (``registrations_by_minute``); these counters
feed the live per-minute display cheaply. Old minutes are dropped once more
than ``keep_minutes`` newer ones exist.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["MINUTE_MS", "MinuteCounter", "minute_of"]

MINUTE_MS = 60_000


def minute_of(epoch_ms: int) -> int:
    """Start of the minute containing ``epoch_ms``, in epoch milliseconds."""
    return epoch_ms - epoch_ms % MINUTE_MS


@dataclass
class MinuteCounter:
    """Counts events per (district, minute) and in total per district."""

    keep_minutes: int = 240
    _minutes: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    _totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, district: str, epoch_ms: int, count: int = 1) -> None:
        """Count ``count`` events of ``district`` at ``epoch_ms``."""
        minute = minute_of(epoch_ms)
        per_minute = self._minutes[district]
        per_minute[minute] = per_minute.get(minute, 0) + count
        self._totals[district] += count
        if len(per_minute) > self.keep_minutes:
            for old in sorted(per_minute)[: len(per_minute) - self.keep_minutes]:
                del per_minute[old]

    def total(self, district: str) -> int:
        """Events of a district since the counter was made."""
        return self._totals.get(district, 0)

    def recent(self, district: str, minutes: int) -> list[tuple[int, int]]:
        """The latest ``minutes`` (minute_ms, count) pairs, oldest first."""
        per_minute = self._minutes.get(district, {})
        return sorted(per_minute.items())[-minutes:] if minutes else []

    def districts(self) -> list[str]:
        """Districts with at least one event."""
        return sorted(self._totals)
