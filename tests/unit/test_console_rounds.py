"""Round arithmetic: hourly sums, milestones and alignment by round start."""

from __future__ import annotations

from console.aggregate import HOUR_MS, hourly, milestones
from console.rounds import align
from engine.counters import MINUTE_MS

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS


def test_minutes_sum_into_their_hours() -> None:
    """Each minute counts into the hour it starts in."""
    per_minute = {T0: 5, T0 + 59 * MINUTE_MS: 1, T0 + HOUR_MS: 7}
    assert {T0: 6, T0 + HOUR_MS: 7} == hourly(per_minute)


def test_milestone_reached_names_its_minute_else_an_eta() -> None:
    """A passed target gives the minute; an open one the time at the rate."""
    per_minute = {T0: 600, T0 + MINUTE_MS: 600}
    first, second, third = milestones(
        per_minute, [2_000, 1_000, 5_000], done=1_200, rate_per_minute=400
    )
    assert (1_000, T0 + MINUTE_MS, None) == (
        first.target,
        first.reached_ms,
        first.eta_ms,
    )
    assert (None, 2 * MINUTE_MS) == (second.reached_ms, second.eta_ms)
    assert 19 * MINUTE_MS // 2 == third.eta_ms


def test_no_arrivals_means_no_eta() -> None:
    """Nothing arriving: the milestone has no ETA rather than infinity."""
    [mark] = milestones({}, [10], done=0, rate_per_minute=0.0)
    assert (None, None) == (mark.reached_ms, mark.eta_ms)


def test_rounds_align_by_minutes_since_their_start() -> None:
    """Two rounds a day apart line up minute for minute from their starts."""
    day = 24 * HOUR_MS
    first = align({T0: 3, T0 + 2 * MINUTE_MS: 4}, T0)
    second = align({T0 + day - MINUTE_MS: 9, T0 + day + 2 * MINUTE_MS: 8}, T0 + day)
    assert {0: 3, 2: 4} == first
    assert {2: 8} == second
