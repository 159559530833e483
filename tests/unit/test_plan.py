"""Unit tests for perf.plan: the capacity arithmetic and where rates come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.plan import (
    DEFAULT_RATES,
    PlanInput,
    Rates,
    make_plan,
    plan_text,
    rates_from_results,
)


def test_plan_multiplies_mean_by_peak_and_headroom() -> None:
    """14 M residents in 4 h average 972/s; x2 peak x1.5 headroom = 2,917/s."""
    needs = PlanInput(residents=14_000_000, hours=4, peak_factor=2.0, headroom=1.5)
    plan = make_plan(needs, Rates(1_000, 1_000, 1_000, "test"))
    assert 14_000_000 / 14_400 == pytest.approx(plan.mean_per_s)
    assert plan.mean_per_s * 3 == pytest.approx(plan.design_per_s)


def test_plan_rounds_nodes_up_and_respects_minimums() -> None:
    """Cores become whole nodes; the store needs its replicas however fast."""
    needs = PlanInput(
        residents=36_000_000, hours=1, peak_factor=1.0, headroom=1.0, node_cores=8
    )
    plan = make_plan(needs, Rates(500, 10_000_000, 10_000_000, "test"))
    tiers = {tier.name: tier for tier in plan.tiers}
    assert 20.0 == pytest.approx(tiers["gateway"].cores)
    assert 3 == tiers["gateway"].nodes
    assert 2 == tiers["shard"].nodes
    assert 3 == tiers["store"].nodes


def test_store_cores_scale_with_replication() -> None:
    """Each replica writes every row, so RF 3 triples the store cores."""
    rates = Rates(1e9, 1e9, 100, "test")
    one = make_plan(PlanInput(360_000, 1, 1.0, 1.0, replication=1), rates)
    three = make_plan(PlanInput(360_000, 1, 1.0, 1.0, replication=3), rates)
    assert 3 * one.tiers[2].cores == pytest.approx(three.tiers[2].cores)


def test_plan_refuses_an_empty_round() -> None:
    """No residents or no hours is a caller error."""
    with pytest.raises(ValueError):
        make_plan(PlanInput(residents=0, hours=4), DEFAULT_RATES)


def test_rates_come_from_the_newest_steady_result(tmp_path: Path) -> None:
    """Per-core rates are durable acks over each role's CPU seconds."""
    for date, acked in (("2026-01-01", 100), ("2026-02-01", 1_000)):
        (tmp_path / f"steady-{date}.json").write_text(
            json.dumps(
                {
                    "scenario": "steady",
                    "acked_stored": acked,
                    "engine_cpu_s": 10.0,
                    "gateway_cpu_s": 2.0,
                    "shard_cpu_s": 3.0,
                    "ray_other_cpu_s": 1.0,
                    "store_cpu_s": 5.0,
                    "meta": {"date": date},
                }
            )
        )
    rates = rates_from_results(tmp_path)
    assert 500.0 == rates.gateway
    assert 250.0 == rates.shard
    assert 200.0 == rates.store


def test_rates_fall_back_to_defaults(tmp_path: Path) -> None:
    """Without results the documented defaults are used, and said so."""
    assert DEFAULT_RATES == rates_from_results(tmp_path)


def test_plan_text_shows_assumptions() -> None:
    """The printed plan names its rates' source and its assumptions."""
    needs = PlanInput(residents=14_000_000, hours=4)
    text = plan_text(needs, DEFAULT_RATES, make_plan(needs, DEFAULT_RATES))
    assert "assumptions:" in text
    assert DEFAULT_RATES.source in text
