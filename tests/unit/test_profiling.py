"""Unit tests for perf.profiling: reading py-spy's collapsed stacks."""

from __future__ import annotations

import pytest

from perf.profiling import frame_name, summarize_collapsed


def test_frame_name_keeps_function_and_file() -> None:
    """Paths and line numbers are dropped; the file name stays."""
    assert "write (shard.py)" == frame_name("write (/work/engine/shard.py:120)")
    assert "<native>" == frame_name("<native>")


def test_inclusive_counts_each_stack_once_and_self_counts_the_top() -> None:
    """A recursive frame counts once per stack; the top frame gets self time."""
    lines = [
        "main (a.py:1);f (b.py:2);f (b.py:3) 3",
        "main (a.py:1);g (c.py:4) 1",
        "garbage line",
    ]
    summary = summarize_collapsed(lines)
    assert 4 == summary.samples
    inclusive = dict(summary.inclusive)
    assert 1.0 == pytest.approx(inclusive["main (a.py)"])
    assert 0.75 == pytest.approx(inclusive["f (b.py)"])
    assert 0.25 == pytest.approx(dict(summary.self_time)["g (c.py)"])


def test_empty_recording_summarizes_to_nothing() -> None:
    """No samples: no shares."""
    assert 0 == summarize_collapsed([]).samples
