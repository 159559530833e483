"""Exact per-minute counts that can no longer change, kept once read."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.counters import MINUTE_MS

__all__ = ["MinuteCountCache"]


@dataclass
class MinuteCountCache:
    """Exact counts of minutes that can no longer change, by district."""

    settle_ms: int
    _counts: dict[tuple[str, int], int] = field(default_factory=dict)

    def get(self, district: str, minute_ms: int) -> int | None:
        """A cached count, or None if it must be (re)read."""
        return self._counts.get((district, minute_ms))

    def put(self, district: str, minute_ms: int, count: int, now_ms: int) -> None:
        """Keep a count if its minute ended more than ``settle_ms`` ago."""
        if minute_ms + MINUTE_MS + self.settle_ms <= now_ms:
            self._counts[(district, minute_ms)] = count

    def __len__(self) -> int:
        return len(self._counts)
