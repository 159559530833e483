"""Unit tests for perf.stats: percentiles, per-second series and peaks."""

from __future__ import annotations

import math

import pytest

from perf.stats import peak_window, per_second, percentile, summarize_latency


def test_percentile_interpolates_linearly() -> None:
    """The median of 1..4 lies halfway between 2 and 3."""
    assert 2.5 == percentile([4, 1, 3, 2], 50)


def test_percentile_of_nothing_is_nan() -> None:
    """No samples give NaN rather than an error."""
    assert math.isnan(percentile([], 99))


def test_percentile_rejects_ranks_outside_0_100() -> None:
    """A rank of 101 is a caller error."""
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_latency_ignores_nan() -> None:
    """Registrations without an ack (NaN latency) do not count."""
    summary = summarize_latency([10.0, float("nan"), 20.0, 30.0])
    assert 3 == summary.count
    assert 20.0 == summary.p50_ms
    assert 30.0 == summary.max_ms


def test_summarize_latency_of_1000_values() -> None:
    """p99 and p99.9 of 1..1000 sit just under the top values."""
    summary = summarize_latency([float(v) for v in range(1, 1001)])
    assert summary.p99_ms == pytest.approx(990.01)
    assert summary.p999_ms == pytest.approx(999.001)


def test_per_second_bins_counts_and_percentiles() -> None:
    """Events fall into whole seconds from the start, empty seconds give NaN."""
    series = per_second([100.1, 100.5, 102.2], [5.0, 15.0, 7.0], start=100.0, seconds=4)
    assert [2, 0, 1, 0] == series.counts
    assert 10.0 == series.p50_ms[0]
    assert math.isnan(series.p50_ms[1])
    assert 7.0 == series.p99_ms[2]


def test_per_second_drops_events_before_start() -> None:
    """An event before the start is outside every bin."""
    series = per_second([99.0, 100.2], [1.0, 2.0], start=100.0)
    assert [1] == series.counts


def test_peak_window_finds_busiest_stretch() -> None:
    """The busiest two consecutive seconds of 1,5,5,1 hold 10."""
    assert 10 == peak_window([1, 5, 5, 1], 2)


def test_peak_window_of_short_series_is_its_sum() -> None:
    """Fewer seconds than the window: the peak minute is everything."""
    assert 6 == peak_window([1, 2, 3], 60)
