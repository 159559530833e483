"""Store latency histograms: buckets, quantiles, merging across hosts."""

from __future__ import annotations

import pytest

from engine.latency import (
    BUCKET_BOUNDS_MS,
    LatencyHistogram,
    LatencyRecorder,
    merge_snapshots,
    quantile_ms,
    summarize,
)


def test_durations_fall_into_the_bucket_at_or_above_them() -> None:
    """A duration counts into the first bucket whose bound is not below it."""
    histogram = LatencyHistogram()
    histogram.record(0.1)
    histogram.record(1.0)
    histogram.record(1.1)
    histogram.record(10_000_000.0)
    assert 1 == histogram.counts[0]
    assert 1 == histogram.counts[BUCKET_BOUNDS_MS.index(1.0)]
    assert 1 == histogram.counts[BUCKET_BOUNDS_MS.index(2.0)]
    assert 1 == histogram.counts[-1]


def test_quantiles_are_bucket_upper_bounds() -> None:
    """p50 and p99 name the bucket holding that rank."""
    histogram = LatencyHistogram()
    for _ in range(98):
        histogram.record(3.0)
    histogram.record(100.0)
    histogram.record_error(100.0)
    summary = summarize(histogram.snapshot())
    assert 100 == summary.count
    assert 1 == summary.errors
    assert 4.0 == summary.p50_ms
    assert 128.0 == summary.p99_ms
    assert summary.mean_ms == pytest.approx((98 * 3 + 200) / 100)


def test_empty_histogram_has_no_quantiles() -> None:
    """Nothing recorded: no p50, no mean, rather than a made-up zero."""
    summary = summarize(LatencyHistogram().snapshot())
    assert (0, None, None, None) == (
        summary.count,
        summary.p50_ms,
        summary.p99_ms,
        summary.mean_ms,
    )


def test_slower_than_every_bound_reports_twice_the_last() -> None:
    """The open bucket cannot say how slow; it says at least the last bound."""
    counts = [0] * len(BUCKET_BOUNDS_MS) + [5]
    assert BUCKET_BOUNDS_MS[-1] * 2 == quantile_ms(counts, 0.5)


def test_snapshots_of_several_hosts_sum() -> None:
    """Merging two hosts' snapshots adds their buckets and errors."""
    first, second = LatencyRecorder(), LatencyRecorder()
    first.histogram("ingest").record(1.0)
    second.histogram("ingest").record(1.0)
    second.histogram("ingest").record_error(50.0)
    merged = merge_snapshots([first.snapshot()["ingest"], second.snapshot()["ingest"]])
    assert 3 == sum(merged["counts"])
    assert 1 == merged["errors"]
    assert ["ingest"] == list(second.snapshot())


def test_snapshots_with_other_bounds_are_refused() -> None:
    """Summing buckets of different edges would be wrong; it is an error."""
    snap = LatencyHistogram().snapshot()
    snap["bounds_ms"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="other bucket bounds"):
        merge_snapshots([snap])
