"""The offered load over time: a fixed rate, or a day's ramp, peak and tail."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal

__all__ = ["RateCurve"]

Shape = Literal["fixed", "day"]


@dataclass(frozen=True, slots=True)
class RateCurve:
    """Registrations per second offered at each moment of a run.

    A ``fixed`` curve offers ``peak_per_s`` from start to end. A ``day`` curve
    is piecewise linear: it ramps from ``floor_share * peak_per_s`` up to the
    peak over the first ``ramp_share`` of the run (sites opening, queues
    forming), holds the peak, and falls back to the floor over the last
    ``tail_share`` (queues emptying). Time is seconds from the run's start.

    Args:
        peak_per_s: the highest rate offered.
        seconds: length of the run.
        shape: ``fixed`` or ``day``.
        ramp_share: share of the run spent ramping up (day only).
        tail_share: share of the run spent ramping down (day only).
        floor_share: rate at the very start and end, as a share of the peak.
    """

    peak_per_s: float
    seconds: float
    shape: Shape = "fixed"
    ramp_share: float = 0.25
    tail_share: float = 0.35
    floor_share: float = 0.2

    def __post_init__(self) -> None:
        if self.peak_per_s < 0 or self.seconds <= 0:
            raise ValueError("a curve needs a rate >= 0 and a positive length")
        if self.shape not in ("fixed", "day"):
            raise ValueError(f"unknown curve shape {self.shape!r}")
        shares = (self.ramp_share, self.tail_share, self.floor_share)
        if min(shares) < 0 or self.ramp_share + self.tail_share > 1:
            raise ValueError("ramp and tail shares must be >= 0 and sum to <= 1")
        if self.floor_share > 1:
            raise ValueError("floor_share must be at most 1")

    def _breakpoints(self) -> list[float]:
        if self.shape == "fixed":
            return [0.0, self.seconds]
        ramp_end = self.ramp_share * self.seconds
        tail_start = self.seconds - self.tail_share * self.seconds
        return [0.0, ramp_end, tail_start, self.seconds]

    def rate_at(self, t: float) -> float:
        """Offered registrations per second at ``t`` (0 outside the run)."""
        if t < 0 or t >= self.seconds:
            return 0.0
        return self._formula(t)

    def _formula(self, t: float) -> float:
        # The rate inside the run, defined at the end point too.
        if self.shape == "fixed":
            return self.peak_per_s
        floor = self.floor_share * self.peak_per_s
        ramp_s = self.ramp_share * self.seconds
        tail_s = self.tail_share * self.seconds
        if ramp_s and t < ramp_s:
            return floor + (self.peak_per_s - floor) * t / ramp_s
        if tail_s and t > self.seconds - tail_s:
            return floor + (self.peak_per_s - floor) * (self.seconds - t) / tail_s
        return self.peak_per_s

    def count_between(self, t0: float, t1: float) -> float:
        """Expected registrations offered in ``[t0, t1)`` (the rate's integral)."""
        low, high = max(t0, 0.0), min(t1, self.seconds)
        if high <= low:
            return 0.0
        edges = [low, *(b for b in self._breakpoints() if low < b < high), high]
        total = 0.0
        for left, right in itertools.pairwise(edges):
            # Linear (and continuous) within a piece: the trapezoid is exact.
            total += (right - left) * (self._formula(left) + self._formula(right)) / 2
        return total

    def total(self) -> float:
        """Expected registrations over the whole run."""
        return self.count_between(0.0, self.seconds)

    def mean_per_s(self) -> float:
        """Average offered rate over the run."""
        return self.total() / self.seconds

    def peak_factor(self) -> float:
        """Peak rate over mean rate (1.0 for a fixed curve)."""
        mean = self.mean_per_s()
        return self.peak_per_s / mean if mean else 1.0

    def scaled(self, share: float) -> RateCurve:
        """The same shape carrying ``share`` of the load (one process's part)."""
        return dataclasses.replace(self, peak_per_s=self.peak_per_s * share)
