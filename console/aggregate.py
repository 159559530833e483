"""Arithmetic over per-minute counts: peak minute, rate, ETA and coverage.

Pure functions on plain numbers so they are tested without any service.
Minutes are keyed by their start in epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.counters import MINUTE_MS

__all__ = [
    "HOUR_MS",
    "Milestone",
    "Peak",
    "city_per_minute",
    "coverage",
    "current_rate",
    "eta_ms",
    "hourly",
    "milestones",
    "peak_minute",
]

HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Peak:
    """The busiest minute so far."""

    minute_ms: int
    count: int


def city_per_minute(
    districts: Iterable[Mapping[int, int]],
) -> dict[int, int]:
    """Sum per-minute counts over districts, minutes in ascending order."""
    total: dict[int, int] = {}
    for per_minute in districts:
        for minute, count in per_minute.items():
            total[minute] = total.get(minute, 0) + count
    return dict(sorted(total.items()))


def peak_minute(per_minute: Mapping[int, int]) -> Peak | None:
    """The minute with the most registrations (earliest on ties), or None."""
    best: Peak | None = None
    for minute in sorted(per_minute):
        count = per_minute[minute]
        if count > 0 and (best is None or count > best.count):
            best = Peak(minute, count)
    return best


def current_rate(
    per_minute: Mapping[int, int], now_ms: int, *, window: int = 5
) -> float:
    """Registrations per minute now: mean of the last ``window`` whole minutes.

    Minutes with no row count as zero. Before one whole minute has passed
    since the first count, the running minute is extrapolated.
    """
    this_minute = now_ms - now_ms % MINUTE_MS
    if not per_minute:
        return 0.0
    first = min(per_minute)
    whole = [
        this_minute - i * MINUTE_MS
        for i in range(1, window + 1)
        if this_minute - i * MINUTE_MS >= first
    ]
    if whole:
        return sum(per_minute.get(m, 0) for m in whole) / len(whole)
    elapsed = max(now_ms - this_minute, 1_000)
    return per_minute.get(this_minute, 0) * MINUTE_MS / elapsed


def eta_ms(done: int, expected: int, rate_per_minute: float) -> int | None:
    """Milliseconds until ``expected`` is reached at the rate, or None.

    Zero once reached; None when nothing is arriving.
    """
    remaining = expected - done
    if remaining <= 0:
        return 0
    if rate_per_minute <= 0:
        return None
    return round(remaining / rate_per_minute * MINUTE_MS)


def coverage(registered: int, population: int) -> float | None:
    """Share of the expected population registered (0..1+), or None."""
    if population <= 0:
        return None
    return registered / population


def hourly(per_minute: Mapping[int, int]) -> dict[int, int]:
    """Sum per-minute counts into hours (keyed by the hour's start, epoch ms)."""
    hours: dict[int, int] = {}
    for minute, count in per_minute.items():
        hour = minute - minute % HOUR_MS
        hours[hour] = hours.get(hour, 0) + count
    return dict(sorted(hours.items()))


@dataclass(frozen=True, slots=True)
class Milestone:
    """When a round passed (or, at the current rate, will pass) a count."""

    target: int
    reached_ms: int | None
    """Start of the minute in which the total reached ``target``."""
    eta_ms: int | None
    """Milliseconds from now until reached at the current rate; None when
    reached already or nothing is arriving."""


def milestones(
    per_minute: Mapping[int, int],
    targets: Iterable[int],
    *,
    done: int,
    rate_per_minute: float,
) -> list[Milestone]:
    """Each target's minute of reaching it, or its ETA at the current rate.

    Args:
        per_minute: the round's counts per minute, every minute counted.
        targets: totals to report on (1M, 5M, 10M...).
        done: the round's total now.
        rate_per_minute: registrations per minute now.
    """
    ordered = sorted(per_minute.items())
    result = []
    for target in sorted(targets):
        reached: int | None = None
        running = 0
        for minute, count in ordered:
            running += count
            if running >= target:
                reached = minute
                break
        left = None if reached is not None else eta_ms(done, target, rate_per_minute)
        result.append(Milestone(target, reached, left))
    return result
