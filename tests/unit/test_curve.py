"""Unit tests for perf.curve: fixed and day-shaped offered load."""

from __future__ import annotations

import pytest

from perf.curve import RateCurve


def test_fixed_curve_offers_rate_times_seconds() -> None:
    """A fixed 100/s over 10 s offers 1,000."""
    curve = RateCurve(100.0, 10.0)
    assert 100.0 == curve.rate_at(3.0)
    assert 1_000.0 == pytest.approx(curve.total())
    assert 1.0 == pytest.approx(curve.peak_factor())


def test_rate_is_zero_outside_the_run() -> None:
    """Before 0 and from the end on nothing is offered."""
    curve = RateCurve(100.0, 10.0, shape="day")
    assert 0.0 == curve.rate_at(-1.0)
    assert 0.0 == curve.rate_at(10.0)


def test_day_curve_ramps_holds_and_tails() -> None:
    """The day curve starts at the floor, holds the peak, ends near the floor."""
    curve = RateCurve(100.0, 100.0, shape="day")
    assert 20.0 == pytest.approx(curve.rate_at(0.0))
    assert 60.0 == pytest.approx(curve.rate_at(12.5))
    assert 100.0 == curve.rate_at(50.0)
    assert 60.0 == pytest.approx(curve.rate_at(82.5))


def test_day_curve_total_is_the_trapezoids() -> None:
    """Ramp 25 s averaging 60/s, 40 s at 100/s, tail 35 s averaging 60/s."""
    curve = RateCurve(100.0, 100.0, shape="day")
    assert 25 * 60 + 40 * 100 + 35 * 60 == pytest.approx(curve.total())
    assert 100 / 76 == pytest.approx(curve.peak_factor())


def test_count_between_adds_up_across_breakpoints() -> None:
    """Counts over adjacent intervals sum to the count over their union."""
    curve = RateCurve(80.0, 60.0, shape="day")
    parts = sum(curve.count_between(t, t + 0.7) for t in [i * 0.7 for i in range(90)])
    assert curve.total() == pytest.approx(parts)


def test_scaled_curve_carries_a_share() -> None:
    """A process with a quarter of the devices gets a quarter of the load."""
    curve = RateCurve(400.0, 10.0, shape="day").scaled(0.25)
    assert 100.0 == curve.peak_per_s
    assert "day" == curve.shape


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ramp_share": 0.7, "tail_share": 0.5},
        {"floor_share": 1.5},
        {"shape": "weekly"},
    ],
)
def test_impossible_curves_are_refused(kwargs: dict[str, object]) -> None:
    """Shares that overlap or exceed the peak, or unknown shapes, raise."""
    with pytest.raises(ValueError):
        RateCurve(10.0, 10.0, **kwargs)  # type: ignore[arg-type]
