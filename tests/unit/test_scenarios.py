"""Unit tests for perf.scenarios: load shapes and the judging of targets."""

from __future__ import annotations

from perf.scenarios import burst, connections, judge, steady


def test_steady_devices_are_rate_times_interval() -> None:
    """3,700/s with a person every 5 s per device needs 18,500 devices."""
    scenario = steady(rate_per_s=3_700, interval_s=5)
    assert 18_500 == scenario.devices
    assert 3_700 * 60 == scenario.offered


def test_burst_spreads_the_count_over_device_windows() -> None:
    """20,000 over 2,000 devices lets each send 10 at once."""
    scenario = burst(count=20_000, devices=2_000)
    assert 10 == scenario.window
    assert 20_000 == scenario.offered


def test_connections_keeps_most_devices_idle() -> None:
    """725/s at 5 s per person needs 3,625 active of the 60,000 devices."""
    scenario = connections(devices=60_000, rate_per_s=725)
    assert 3_625 == scenario.active
    assert 60_000 == scenario.devices


def test_judge_reads_latencies_as_maximums_and_rates_as_minimums() -> None:
    """A fast enough rate meets; a p99 above its bound misses."""
    verdicts = judge("steady", {"throughput_per_s": 4_000.0, "ack_p99_ms": 300.0})
    assert verdicts["throughput_per_s"]["met"] is True
    assert verdicts["ack_p99_ms"]["met"] is False
    assert verdicts["efficiency"]["met"] is None


def test_judge_burst_deadline() -> None:
    """All acked at 4.2 s meets the 5 s burst target."""
    verdicts = judge("burst", {"acked_within_5s": 20_000, "burst_all_acked_s": 4.2})
    assert all(v["met"] for v in verdicts.values())
