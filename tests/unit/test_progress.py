"""Unit tests for perf.progress: the progress line's contents."""

from __future__ import annotations

from perf.progress import Tick, format_tick


def _tick(**changes: object) -> Tick:
    values: dict[str, object] = {
        "phase": "load",
        "elapsed_s": 10.0,
        "total_s": 60.0,
        "interval_s": 5.0,
        "sent": 5_000,
        "acked": 4_000,
        "new_sent": 1_000,
        "new_acked": 500,
        "latencies_ms": [10.0] * 99 + [900.0],
        "open_streams": 1_500,
        "inflight": 120,
        "backpressure": 0,
        "engine_cpu_s": 5.0,
        "load_cpu_s": 1.0,
        "machine_cpu_s": 8.0,
        "cores": 2,
    }
    values.update(changes)
    return Tick(**values)  # type: ignore[arg-type]


def test_line_shows_rates_latency_and_cpu_shares() -> None:
    """Counts per interval become rates, CPU seconds become percentages."""
    line = format_tick(_tick())
    assert "(200/s)" in line
    assert "(100/s)" in line
    assert "streams 1,500" in line
    assert "cpu engine 100%" in line
    assert "of 200%" in line


def test_line_without_gateway_or_acks() -> None:
    """No gateway stats and no latencies print dashes, not errors."""
    line = format_tick(_tick(open_streams=None, latencies_ms=[]))
    assert "gateway -" in line
    assert "p99 - ms" in line
