"""Journey columns, the kept stage minutes, coverage sources and tube timelines."""

from __future__ import annotations

from console.coverage import FROM_CITY, FROM_REGISTRY, build_coverage
from console.journey import (
    JourneySnapshot,
    StageMinuteCache,
    StageTotals,
    format_wait,
    merge_totals,
)
from console.metrics import ConsoleMetrics
from console.pages.tubes import timeline_rows
from engine.city import load_city
from engine.config import REPO_ROOT
from engine.counters import MINUTE_MS
from engine.stage_counts import MinuteCounts
from sieve.v1 import journey_pb2

T0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS
CITY = load_city(REPO_ROOT / "config" / "tianjin.toml")


def _minute(offset: int, **counts: int) -> MinuteCounts:
    waits = {k[5:]: v for k, v in counts.items() if k.startswith("wait_")}
    plain = {k: v for k, v in counts.items() if not k.startswith("wait_")}
    return MinuteCounts(
        T0 + offset * MINUTE_MS,
        plain,
        waited_ms=waits,
        timed={k: plain.get(k, 0) for k in waits},
    )


def test_totals_add_minutes_and_weigh_waits_by_tube() -> None:
    """Counts add up; a mean wait is summed wait over tubes that carry one."""
    totals = StageTotals.from_minutes(
        [
            _minute(0, registered=30, sealed=2, wait_sealed=2_000),
            _minute(1, registered=10, sealed=1, wait_sealed=7_000, dispatched=3),
            _minute(2, received=1),
        ]
    )
    assert 40 == totals.count("registered")
    assert 3 == totals.count("sealed")
    assert 2 == totals.count("in_transit")
    assert 3_000 == totals.mean_wait_ms("sealed")
    assert totals.mean_wait_ms("tested") is None


def test_in_transit_never_goes_below_zero() -> None:
    """A receipt read before its dispatch's count shows 0 in transit, not -1."""
    totals = StageTotals.from_minutes([_minute(0, received=1)])
    assert 0 == totals.count("in_transit")


def test_city_totals_weigh_every_tube_alike() -> None:
    """The city mean is not the mean of district means."""
    one = StageTotals.from_minutes([_minute(0, tested=1, wait_tested=1_000)])
    many = StageTotals.from_minutes([_minute(0, tested=3, wait_tested=9_000)])
    city = merge_totals([one, many])
    assert 4 == city.count("tested")
    assert 2_500 == city.mean_wait_ms("tested")
    snapshot = JourneySnapshot(T0, 1, T0, {"a": one, "b": many})
    assert 4 == snapshot.total.count("tested")


def test_cache_keeps_settled_minutes_until_recheck() -> None:
    """Running minutes are read again; settled ones until they are re-checked."""
    cache = StageMinuteCache(settle_ms=20_000, recheck_ms=300_000)
    now = T0 + 2 * MINUTE_MS + 30_000
    cache.put("120101", _minute(0, sealed=1), now)
    cache.put("120101", _minute(2, sealed=5), now)
    assert 1 == len(cache)
    assert cache.get("120101", T0, now) is not None
    assert cache.get("120101", T0 + 2 * MINUTE_MS, now) is None
    minutes = [T0, T0 + MINUTE_MS, T0 + 2 * MINUTE_MS]
    assert T0 + MINUTE_MS == cache.first_missing("120101", minutes, now)
    assert T0 == cache.first_missing("120102", minutes, now)
    assert cache.get("120101", T0, now + 300_000) is None
    assert T0 == cache.first_missing("120101", minutes, now + 300_000)


def test_cache_does_not_keep_a_minute_inside_the_settle_time() -> None:
    """A minute that ended less than settle_ms ago may still gain rows."""
    cache = StageMinuteCache(settle_ms=20_000, recheck_ms=300_000)
    cache.put("120101", _minute(0, sealed=1), T0 + MINUTE_MS + 19_999)
    assert 0 == len(cache)


def test_format_wait_reads_naturally() -> None:
    """Seconds, then minutes and seconds, then hours and minutes."""
    assert "–" == format_wait(None)
    assert "45 s" == format_wait(45_200)
    assert "3 min 20 s" == format_wait(200_000)
    assert "2 h 05 min" == format_wait(7_500_000)


def test_coverage_falls_back_to_the_city_file_without_a_registry() -> None:
    """No registry: expected is the census population, and it says so."""
    view = build_coverage(T0, CITY, {"120101": 3_550}, None)
    assert FROM_CITY == view.expected_from
    assert 355_000 == view.expected["120101"]
    assert 0.01 == view.share("120101")
    assert 0 == view.sampled["120102"]
    assert "city file" in view.describe()


def test_coverage_uses_the_registry_when_one_is_imported() -> None:
    """A registry's residents are expected; a district it lacks has no share."""
    view = build_coverage(T0, CITY, {"120101": 5}, {"120101": 20}, 3)
    assert FROM_REGISTRY == view.expected_from
    assert 20 == view.expected["120101"]
    assert 0.25 == view.share("120101")
    assert view.share("120102") is None
    assert "version 3" in view.describe()


def test_timeline_is_in_time_order() -> None:
    """Events stored out of order are shown oldest first."""
    view = journey_pb2.TubeView(
        known=True,
        events=[
            journey_pb2.TubeEvent(stage="RESULT", at_ms=T0 + 3, detail="POSITIVE"),
            journey_pb2.TubeEvent(stage="SEALED", at_ms=T0 + 1),
            journey_pb2.TubeEvent(stage="BOXED", at_ms=T0 + 2, box="B1"),
        ],
    )
    rows = timeline_rows(view)
    assert ["SEALED", "BOXED", "RESULT"] == [row["stage"] for row in rows]
    assert "POSITIVE" == rows[-1]["detail"]


def test_timeline_keeps_journey_order_within_one_millisecond() -> None:
    """Steps stamped in the same millisecond are not sorted by name."""
    view = journey_pb2.TubeView(
        events=[
            journey_pb2.TubeEvent(stage=stage, at_ms=T0)
            for stage in ("RESULT", "DISPATCHED", "SEALED", "BOXED", "RECEIVED")
        ]
    )
    assert ["SEALED", "BOXED", "DISPATCHED", "RECEIVED", "RESULT"] == [
        row["stage"] for row in timeline_rows(view)
    ]


def test_metrics_export_stage_counts_and_coverage() -> None:
    """Every district's stages and coverage are Prometheus gauges."""
    metrics = ConsoleMetrics()
    totals = StageTotals.from_minutes(
        [_minute(0, registered=20, sealed=2, dispatched=2, received=1, positive=1)]
    )
    metrics.update_journey(
        JourneySnapshot(T0, 1, T0, {"120101": totals}),
        build_coverage(T0, CITY, {"120101": 20}, None),
    )
    text = metrics.exposition().decode()
    assert 'sieve_journey_stage_tubes{district="120101",stage="in_transit"} 1.0' in text
    assert 'sieve_journey_stage_tubes{district="120101",stage="positive"} 1.0' in text
    assert 'sieve_coverage_expected{district="120101"} 355000.0' in text
    assert 'sieve_coverage_sampled{district="120101"} 20.0' in text
