"""Summary maths of a bench run: percentiles, per-second series and peaks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LatencySummary",
    "SecondSeries",
    "peak_window",
    "per_second",
    "percentile",
    "summarize_latency",
]

FloatArray = npt.NDArray[np.float64]


def percentile(values: Sequence[float] | FloatArray, q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN if empty.

    Args:
        values: samples, in any order.
        q: percentile rank, 0 to 100.

    Returns:
        The interpolated value, or NaN for no samples.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile rank {q} is outside 0..100")
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return math.nan
    return float(np.percentile(data, q))


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Ack latency percentiles of one run, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def summarize_latency(latencies_ms: Sequence[float] | FloatArray) -> LatencySummary:
    """p50, p99, p99.9 and max of ack latencies; NaN fields when there are none."""
    data = np.asarray(latencies_ms, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return LatencySummary(0, math.nan, math.nan, math.nan, math.nan)
    p50, p99, p999 = np.percentile(data, [50, 99, 99.9])
    return LatencySummary(
        count=int(data.size),
        p50_ms=float(p50),
        p99_ms=float(p99),
        p999_ms=float(p999),
        max_ms=float(data.max()),
    )


@dataclass(frozen=True, slots=True)
class SecondSeries:
    """Per-second acks and latency percentiles, second 0 starting at ``start``."""

    start: float
    counts: list[int]
    p50_ms: list[float]
    p99_ms: list[float]


def per_second(
    times: Sequence[float] | FloatArray,
    latencies_ms: Sequence[float] | FloatArray,
    *,
    start: float,
    seconds: int | None = None,
) -> SecondSeries:
    """Bin events into whole seconds from ``start``; latency percentiles per bin.

    Args:
        times: event times (same clock as ``start``), one per latency.
        latencies_ms: the latency of each event.
        start: time of the first bin's left edge.
        seconds: number of bins; by default up to the last event.

    Returns:
        Counts and p50/p99 per second (NaN for an empty second).
    """
    when = np.asarray(times, dtype=np.float64)
    lat = np.asarray(latencies_ms, dtype=np.float64)
    if when.shape != lat.shape:
        raise ValueError("times and latencies differ in length")
    offsets = np.floor(when - start).astype(np.int64)
    keep = offsets >= 0
    if seconds is None:
        seconds = int(offsets.max()) + 1 if when.size and keep.any() else 0
    keep &= offsets < seconds
    offsets, lat = offsets[keep], lat[keep]
    counts = np.bincount(offsets, minlength=seconds)[:seconds]
    p50: list[float] = []
    p99: list[float] = []
    if offsets.size:
        order = np.argsort(offsets, kind="stable")
        offsets, lat = offsets[order], lat[order]
        edges = np.searchsorted(offsets, np.arange(seconds + 1))
    else:
        edges = np.zeros(seconds + 1, dtype=np.int64)
    for second in range(seconds):
        chunk = lat[edges[second] : edges[second + 1]]
        if chunk.size:
            low, high = np.percentile(chunk, [50, 99])
            p50.append(float(low))
            p99.append(float(high))
        else:
            p50.append(math.nan)
            p99.append(math.nan)
    return SecondSeries(
        start=start, counts=[int(c) for c in counts], p50_ms=p50, p99_ms=p99
    )


def peak_window(counts: Sequence[int], width: int) -> int:
    """Largest sum of ``width`` consecutive counts (all of them if fewer).

    With per-second counts, ``width=60`` gives the busiest minute.
    """
    if width < 1:
        raise ValueError("window width must be at least 1")
    data = np.asarray(counts, dtype=np.int64)
    if data.size == 0:
        return 0
    if data.size <= width:
        return int(data.sum())
    sums = np.convolve(data, np.ones(width, dtype=np.int64), mode="valid")
    return int(sums.max())
