"""The bench scenarios (steady, burst, connections, soak): load shapes and targets.

A :class:`Scenario` says what the devices do; :func:`judge` says which
targets a run's figures meet. Targets are goals to report against, on one
2-core machine carrying gateway, shard hosts, store and load together; they
are never asserted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from perf.curve import RateCurve, Shape
from perf.fleet import BurstSpec

__all__ = ["TARGETS", "Scenario", "burst", "connections", "judge", "soak", "steady"]

TARGETS: dict[str, dict[str, float]] = {
    "steady": {
        "throughput_per_s": 3_625,
        "ack_p99_ms": 250,
        "efficiency": 0.60,
    },
    "soak": {
        "throughput_per_s": 3_625,
        "ack_p99_ms": 250,
        "seconds": 600,
        "efficiency": 0.60,
    },
    "burst": {"acked_within_5s": 20_000, "burst_all_acked_s": 5.0},
    "connections": {
        "connections_held": 60_000,
        "ingest_per_s": 725,
        "ack_p99_ms": 100,
    },
}
"""Per scenario: figure name -> target. Rates and counts are minimums; the
``_ms`` and ``_s`` latencies are maximums."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One load shape.

    Attributes:
        name: scenario name (also the targets' key).
        seconds: how long registrations are offered.
        devices: devices connected, each with its own stream.
        active: of those, devices that register people; the rest idle.
        curve: offered registrations per second over time (None: burst only).
        burst: registrations handed out at once (None: curve only).
        window: registrations one device may have unacked (a phone: 1).
        bad_share: share of deliberately bad registrations.
        offline_share: share of active devices offline at any moment.
        offline_mean_s: mean length of an offline spell.
        heartbeat_s: idle time after which a device sends a heartbeat.
        connect_per_s: streams opened per second at the start.
        drain_s: longest wait for final acks after the offering ends.
    """

    name: str
    seconds: float
    devices: int
    active: int
    curve: RateCurve | None
    burst: BurstSpec | None = None
    window: int = 1
    bad_share: float = 0.02
    offline_share: float = 0.0
    offline_mean_s: float = 30.0
    heartbeat_s: float = 0.0
    connect_per_s: float = 2_000.0
    drain_s: float = 60.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def offered(self) -> float:
        """Registrations the scenario expects to offer in all."""
        total = self.curve.total() if self.curve else 0.0
        return total + (self.burst.count if self.burst else 0)


def _devices_for(rate_per_s: float, interval_s: float) -> int:
    # One person every interval_s per device: rate x interval devices.
    return max(1, math.ceil(rate_per_s * interval_s))


def steady(
    *,
    seconds: float = 60.0,
    rate_per_s: float = 3_700.0,
    interval_s: float = 5.0,
    shape: Shape = "fixed",
    bad_share: float = 0.02,
    offline_share: float = 0.0,
    name: str = "steady",
) -> Scenario:
    """A fixed (or day-curve) rate from phones, one registration per message.

    The default 3,700/s with 2% bad input offers ~3,626 valid registrations
    a second, the sustained target. Devices = rate x interval.
    """
    devices = _devices_for(rate_per_s, interval_s)
    return Scenario(
        name=name,
        seconds=seconds,
        devices=devices,
        active=devices,
        curve=RateCurve(rate_per_s, seconds, shape=shape),
        bad_share=bad_share,
        offline_share=offline_share,
        notes={"rate_per_s": rate_per_s, "interval_s": interval_s, "shape": shape},
    )


def soak(
    *,
    seconds: float = 180.0,
    rate_per_s: float = 3_700.0,
    interval_s: float = 5.0,
    shape: Shape = "fixed",
    bad_share: float = 0.02,
    offline_share: float = 0.01,
) -> Scenario:
    """Steady for long, with devices dropping offline and resending backlogs."""
    return steady(
        seconds=seconds,
        rate_per_s=rate_per_s,
        interval_s=interval_s,
        shape=shape,
        bad_share=bad_share,
        offline_share=offline_share,
        name="soak",
    )


def burst(
    *,
    count: int = 20_000,
    within_s: float = 1.0,
    devices: int = 2_000,
    bad_share: float = 0.0,
    drain_s: float = 60.0,
) -> Scenario:
    """``count`` registrations reach the gateway within ``within_s`` seconds.

    Each device holds ``count / devices`` of them and may send them all at
    once (window), as a device flushing a backlog does.
    """
    window = max(1, math.ceil(count / devices))
    return Scenario(
        name="burst",
        seconds=within_s,
        devices=devices,
        active=devices,
        curve=None,
        burst=BurstSpec(count=count, within_s=within_s),
        window=window,
        bad_share=bad_share,
        drain_s=drain_s,
        notes={"count": count, "within_s": within_s},
    )


def connections(
    *,
    devices: int = 60_000,
    seconds: float = 60.0,
    rate_per_s: float = 725.0,
    interval_s: float = 5.0,
    heartbeat_s: float = 30.0,
    connect_per_s: float = 2_000.0,
) -> Scenario:
    """Many devices connected at once, most idle with heartbeats, some ingesting."""
    active = min(devices, _devices_for(rate_per_s, interval_s))
    return Scenario(
        name="connections",
        seconds=seconds,
        devices=devices,
        active=active,
        curve=RateCurve(rate_per_s, seconds),
        heartbeat_s=heartbeat_s,
        connect_per_s=connect_per_s,
        notes={"rate_per_s": rate_per_s, "heartbeat_s": heartbeat_s},
    )


def judge(name: str, figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compare a run's figures with its scenario's targets.

    Returns:
        Per target figure: ``target``, ``measured`` and ``met`` (None when
        the run did not measure it).
    """
    verdicts: dict[str, dict[str, Any]] = {}
    for key, target in TARGETS.get(name, {}).items():
        measured = figures.get(key)
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            met = None
        elif key.endswith("_ms") or key == "burst_all_acked_s":
            met = measured <= target
        else:
            met = measured >= target
        verdicts[key] = {"target": target, "measured": measured, "met": met}
    return verdicts
