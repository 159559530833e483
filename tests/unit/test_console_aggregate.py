"""Console arithmetic: city totals, peak minute, rate, ETA and coverage."""

from __future__ import annotations

from console.aggregate import (
    Peak,
    city_per_minute,
    coverage,
    current_rate,
    eta_ms,
    peak_minute,
)
from console.sources import MinuteCountCache
from engine.counters import MINUTE_MS

T0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS


def test_city_per_minute_sums_districts() -> None:
    """District minutes add up per minute, in time order."""
    total = city_per_minute([{T0: 2, T0 + MINUTE_MS: 3}, {T0: 5}])
    assert {T0: 7, T0 + MINUTE_MS: 3} == total
    assert [T0, T0 + MINUTE_MS] == list(total)


def test_peak_minute_is_the_busiest_and_earliest_on_ties() -> None:
    """The peak is the largest count; a tie goes to the earlier minute."""
    per_minute = {T0: 4, T0 + MINUTE_MS: 9, T0 + 2 * MINUTE_MS: 9}
    assert Peak(T0 + MINUTE_MS, 9) == peak_minute(per_minute)


def test_no_peak_without_registrations() -> None:
    """Empty or all-zero minutes have no peak."""
    assert peak_minute({}) is None
    assert peak_minute({T0: 0}) is None


def test_rate_is_mean_of_last_whole_minutes_with_gaps_as_zero() -> None:
    """The rate averages the last five whole minutes, a missing one as zero."""
    per_minute = {T0 + i * MINUTE_MS: 100 for i in range(6) if i != 3}
    per_minute[T0 + 6 * MINUTE_MS] = 7  # the running minute is not counted
    now = T0 + 6 * MINUTE_MS + 30_000
    assert 80.0 == current_rate(per_minute, now)


def test_rate_in_the_first_minute_extrapolates_the_running_minute() -> None:
    """Before a whole minute has passed, the running minute is scaled up."""
    assert 60.0 == current_rate({T0: 30}, T0 + 30_000)
    assert 0.0 == current_rate({}, T0 + 30_000)


def test_eta_at_the_current_rate() -> None:
    """ETA is the remaining population over the rate, in milliseconds."""
    assert 10 * MINUTE_MS == eta_ms(done=1_000, expected=2_000, rate_per_minute=100)
    assert 0 == eta_ms(done=2_001, expected=2_000, rate_per_minute=100)
    assert eta_ms(done=5, expected=2_000, rate_per_minute=0) is None


def test_coverage_against_expected_population() -> None:
    """Coverage is registered over population, undefined for population 0."""
    assert 0.25 == coverage(250, 1_000)
    assert coverage(1, 0) is None


def test_minute_cache_keeps_only_settled_minutes() -> None:
    """A minute is cached only once it ended more than the settle time ago."""
    cache = MinuteCountCache(settle_ms=20_000)
    cache.put("120101", T0, 5, now_ms=T0 + MINUTE_MS + 10_000)
    assert cache.get("120101", T0) is None
    cache.put("120101", T0, 6, now_ms=T0 + MINUTE_MS + 20_000)
    assert 6 == cache.get("120101", T0)
