"""Fixed-bucket latency histograms, cheap enough for every store request.

:class:`LatencyHistogram` counts durations into fixed, doubling buckets (one
bisect and one increment per request), so quantiles are approximate: a
quantile is reported as the upper bound of the bucket it falls in. Snapshots
are plain dicts of the same buckets, so histograms from several processes can
be summed before quantiles are taken.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUCKET_BOUNDS_MS",
    "LatencyHistogram",
    "LatencyRecorder",
    "LatencySummary",
    "merge_snapshots",
    "quantile_ms",
    "summarize",
]

BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(0.25 * 2**i for i in range(17))
"""Upper bounds of the buckets, 0.25 ms to 16.4 s doubling; a last, open
bucket takes anything slower. Doubling keeps a quantile within a factor of
two of the truth, which is enough to tell 'fine' from 'tipping over'."""


@dataclass
class LatencyHistogram:
    """Counts of durations per bucket, plus errors, for one kind of request."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS_MS) + 1))
    num_errors: int = 0
    total_ms: float = 0.0

    def record(self, duration_ms: float) -> None:
        """Count one finished request."""
        self.counts[bisect.bisect_left(BUCKET_BOUNDS_MS, duration_ms)] += 1
        self.total_ms += duration_ms

    def record_error(self, duration_ms: float) -> None:
        """Count one failed request; its time counts into the buckets too."""
        self.num_errors += 1
        self.record(duration_ms)

    def snapshot(self) -> dict[str, Any]:
        """A plain, picklable copy: bucket counts, errors and total time."""
        return {
            "bounds_ms": list(BUCKET_BOUNDS_MS),
            "counts": list(self.counts),
            "errors": self.num_errors,
            "total_ms": self.total_ms,
        }


class LatencyRecorder:
    """One histogram per name (a store execution profile, for example)."""

    def __init__(self) -> None:
        self._histograms: dict[str, LatencyHistogram] = {}

    def histogram(self, name: str) -> LatencyHistogram:
        """The histogram of ``name``, made on first use."""
        found = self._histograms.get(name)
        if found is None:
            found = self._histograms[name] = LatencyHistogram()
        return found

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every histogram's snapshot, by name."""
        return {name: h.snapshot() for name, h in sorted(self._histograms.items())}


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """What a panel shows of one histogram."""

    count: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum snapshots taken with the same bucket bounds.

    Raises:
        ValueError: two snapshots use different bucket bounds.
    """
    counts = [0] * (len(BUCKET_BOUNDS_MS) + 1)
    errors = 0
    total_ms = 0.0
    for snap in snapshots:
        if tuple(snap["bounds_ms"]) != BUCKET_BOUNDS_MS:
            raise ValueError(
                f"latency snapshot has other bucket bounds: {snap['bounds_ms']!r}"
            )
        counts = [a + b for a, b in zip(counts, snap["counts"], strict=True)]
        errors += int(snap["errors"])
        total_ms += float(snap["total_ms"])
    return {
        "bounds_ms": list(BUCKET_BOUNDS_MS),
        "counts": counts,
        "errors": errors,
        "total_ms": total_ms,
    }


def quantile_ms(counts: Sequence[int], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` (0..1), or None.

    The open last bucket reports twice the last bound: slower than that is
    all it can say.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            if index < len(BUCKET_BOUNDS_MS):
                return BUCKET_BOUNDS_MS[index]
            return BUCKET_BOUNDS_MS[-1] * 2
    return BUCKET_BOUNDS_MS[-1] * 2  # pragma: no cover - rank <= total


def summarize(snapshot: Mapping[str, Any]) -> LatencySummary:
    """Count, errors, p50, p99 and mean of one snapshot."""
    counts = list(snapshot["counts"])
    total = sum(counts)
    return LatencySummary(
        count=total,
        errors=int(snapshot["errors"]),
        p50_ms=quantile_ms(counts, 0.5),
        p99_ms=quantile_ms(counts, 0.99),
        mean_ms=float(snapshot["total_ms"]) / total if total else None,
    )
