"""Capacity model: gateway, shard and store nodes for a round, from per-core rates.

Arithmetic, with every assumption printed:

* mean rate = residents / (hours x 3600);
* peak rate = mean x peak factor (the day curve's peak over its mean: sites
  open, queues form and drain); design rate = peak x headroom (spare room for
  a lost node, retries after an outage and minute-level bursts);
* cores per tier = design rate / that tier's registrations per CPU-second;
  the store tier also multiplies by the replication factor, since every
  replica writes every row; nodes = cores / cores per node, rounded up, and
  never fewer than the tier's minimum (two for redundancy, replication for
  the store).

Per-core rates come from the newest steady result under ``perf/results``
(a soak result if there is none) (durable acks over each role's CPU seconds; Ray's own
processes are charged to the shard tier), else from :data:`DEFAULT_RATES`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf.curve import RateCurve

__all__ = [
    "DEFAULT_RATES",
    "PlanInput",
    "Rates",
    "TierPlan",
    "make_plan",
    "plan_text",
    "rates_from_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Rates:
    """Registrations per CPU-second of each tier, and where they come from."""

    gateway: float
    shard: float
    store: float
    source: str
    store_ceiling_per_node: float | None = None
    """Registrations/s one store node took from a bare client (its write
    concurrency, not its CPU, set it), when a result measured it."""


DEFAULT_RATES = Rates(
    gateway=1_100.0,
    shard=850.0,
    store=600.0,
    source="documented defaults (perf/plan.py), no result file found",
)
"""Rounded from perf/results/steady.json of 2026-12-03 (2-core dev machine,
engine as is, 12.6 registrations per host batch); see perf/RESULTS.md."""

SUSTAINED_TARGET_PER_S = 3_625
DAY_PEAK_FACTOR = RateCurve(1.0, 1.0, shape="day").peak_factor()


@dataclass(frozen=True, slots=True)
class PlanInput:
    """The round to plan for and the assumptions to plan with."""

    residents: int
    hours: float
    peak_factor: float = DAY_PEAK_FACTOR
    headroom: float = 1.5
    node_cores: int = 8
    replication: int = 3
    min_nodes: int = 2
    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TierPlan:
    """One tier's share of the work."""

    name: str
    per_core_s: float
    cores: float
    nodes: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Rates and nodes for a round."""

    mean_per_s: float
    peak_per_s: float
    design_per_s: float
    devices_at_peak: int
    tiers: list[TierPlan]


def _latest_result(directory: Path) -> dict[str, Any] | None:
    found = []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("scenario") in ("steady", "soak") and data.get("engine_cpu_s"):
            # steady before soak, then newest: a soak runs below saturation.
            rank = data["scenario"] == "steady"
            found.append((rank, data.get("meta", {}).get("date", ""), str(path), data))
    if not found:
        return None
    found.sort()
    _, _, where, data = found[-1]
    data["_path"] = where
    return dict(data)


def rates_from_results(directory: Path = RESULTS_DIR) -> Rates:
    """Per-core rates from the newest steady (else soak) result, else defaults."""
    data = _latest_result(directory)
    if data is None:
        return DEFAULT_RATES
    stored = float(data["acked_stored"])
    shard_s = float(data["shard_cpu_s"]) + float(data.get("ray_other_cpu_s", 0.0))
    values = (float(data["gateway_cpu_s"]), shard_s, float(data["store_cpu_s"]))
    if stored <= 0 or min(values) <= 0:
        return DEFAULT_RATES
    gateway_s, shard_s, store_s = values
    return Rates(
        gateway=stored / gateway_s,
        shard=stored / shard_s,
        store=stored / store_s,
        source=f"{data['_path']} ({data.get('meta', {}).get('date', '?')})",
        store_ceiling_per_node=data.get("ceiling_store_per_s"),
    )


def make_plan(needs: PlanInput, rates: Rates) -> Plan:
    """Nodes per tier for ``needs`` at ``rates``."""
    if needs.residents <= 0 or needs.hours <= 0:
        raise ValueError("residents and hours must be positive")
    mean = needs.residents / (needs.hours * 3_600)
    peak = mean * needs.peak_factor
    design = peak * needs.headroom
    tiers = []
    for name, per_core, factor, minimum in (
        ("gateway", rates.gateway, 1, needs.min_nodes),
        ("shard", rates.shard, 1, needs.min_nodes),
        ("store", rates.store, needs.replication, needs.replication),
    ):
        cores = design * factor / per_core
        nodes = max(minimum, math.ceil(cores / needs.node_cores))
        tiers.append(TierPlan(name, per_core, cores, nodes))
    return Plan(
        mean_per_s=mean,
        peak_per_s=peak,
        design_per_s=design,
        devices_at_peak=math.ceil(peak * needs.interval_s),
        tiers=tiers,
    )


def plan_text(needs: PlanInput, rates: Rates, plan: Plan) -> str:
    """The plan with its assumptions, as printed by ``sieve plan``."""
    lines = [
        f"round: {needs.residents:,} residents in {needs.hours:g} h",
        f"  mean {plan.mean_per_s:,.0f}/s x peak factor {needs.peak_factor:.2f}"
        f" = peak {plan.peak_per_s:,.0f}/s; x headroom {needs.headroom:g}"
        f" = design {plan.design_per_s:,.0f}/s",
        f"  devices busy at the peak (one person per {needs.interval_s:g} s):"
        f" {plan.devices_at_peak:,}",
        f"per-core rates (registrations per CPU-second) from {rates.source}",
    ]
    for tier in plan.tiers:
        extra = f" x replication {needs.replication}" if tier.name == "store" else ""
        lines.append(
            f"  {tier.name:8s} {tier.per_core_s:8,.0f}/core-s -> "
            f"{tier.cores:7,.1f} cores{extra} -> {tier.nodes} nodes of "
            f"{needs.node_cores} cores"
        )
    ceiling = rates.store_ceiling_per_node
    if ceiling:
        capped = math.ceil(plan.design_per_s * needs.replication / ceiling)
        lines.append(
            f"  store, if each node keeps the measured write ceiling of"
            f" {ceiling:,.0f}/s (the dev node's, as configured by"
            f" cluster/cassandra/cassandra.yaml): {capped} nodes instead"
        )
    lines += [
        "assumptions:",
        f"  peak factor {needs.peak_factor:.2f}: peak/mean of the bench day curve"
        " (ramp 25%, peak, tail 35%, floor 20%)",
        f"  (the bench's sustained target, {SUSTAINED_TARGET_PER_S:,}/s, is"
        f" {SUSTAINED_TARGET_PER_S / plan.mean_per_s:.2f} x this round's mean)",
        f"  headroom {needs.headroom:g}: tiers run at {100 / needs.headroom:.0f}%"
        " of their measured per-core rate at the design peak",
        "  per-core rates scale linearly with cores and nodes (no cross-node"
        " coordination on the ingest path; shards own disjoint ids)",
        f"  at least {needs.min_nodes} gateway and shard nodes, and"
        f" {needs.replication} store nodes (LOCAL_QUORUM needs a quorum of"
        " replicas up)",
        "  store rate measured at replication 1 on one node, commit log"
        " group-synced; each replica repeats the write; the node count by"
        " cores assumes the store is CPU-bound (write concurrency raised)",
    ]
    return "\n".join(lines)
