"""A bench run's figures: derived from what was sent, acked and stored; JSON, text.

Definitions used throughout (also in perf/RESULTS.md):

* sent: registrations captured and handed to a device to send (each id once,
  however often the device had to resend it).
* acked: registrations with a final ack (STORED, DUPLICATE or REJECTED).
* throughput_per_s: STORED and DUPLICATE acks (both mean durably stored)
  divided by the seconds from the start of the offering to the last of them.
* ack latency: from a registration's first send to its final ack, over the
  durable (STORED/DUPLICATE) acks; retries and backpressure waits included.
* engine_cpu_s: CPU seconds of the gateway, shard-host and Cassandra
  processes over the measured window (offering plus drain).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from perf.loadgen import LoadResult
from perf.scenarios import Scenario, judge
from perf.stats import peak_window, per_second, summarize_latency
from perf.verify import StoreCheck
from sieve.v1 import ingest_pb2

__all__ = [
    "add_ceilings",
    "add_verdicts",
    "clean_json",
    "compute_figures",
    "markdown_rows",
    "summary_text",
    "write_json",
]

BURST_DEADLINE_S = 5.0


def _reasons(load: LoadResult) -> dict[str, int]:
    codes = load.reason[load.status == 3].tolist()
    counts = Counter(ingest_pb2.RejectReason.Name(int(code)) for code in codes)
    return dict(sorted(counts.items()))


def compute_figures(
    scenario: Scenario,
    load: LoadResult,
    check: StoreCheck | None,
    cpu: dict[str, float],
    window_s: float,
    cores: int,
) -> dict[str, Any]:
    """Every figure of a run that follows from the load, the store and the CPU.

    Args:
        scenario: what was run.
        load: merged load-generator result.
        check: the store scan (None when skipped).
        cpu: CPU seconds per role over the measured window.
        window_s: wall seconds of the measured window.
        cores: cores of this machine.
    """
    start = load.started_at
    durable = (load.status == 1) | (load.status == 2)
    stored_t = load.ack_t[durable]
    stored_lat = load.latency_ms[durable]
    last = float(stored_t.max()) if stored_t.size else start
    active_s = max(last - start, 1e-9)
    series = per_second(stored_t, stored_lat, start=start)
    offered = np.bincount(
        np.floor(load.put_t - start).clip(0).astype(np.int64),
        minlength=len(series.counts),
    )
    latency = summarize_latency(stored_lat)
    engine_cpu_s = cpu.get("gateway", 0.0) + cpu.get("shard_host", 0.0)
    engine_cpu_s += cpu.get("store", 0.0)
    ours = sum(v for k, v in cpu.items() if k != "machine")
    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "seconds": scenario.seconds,
        "devices": scenario.devices,
        "active_devices": scenario.active,
        "offered_per_s": scenario.curve.mean_per_s() if scenario.curve else None,
        "sent": int(load.status.size),
        "sent_bad": int(load.bad.sum()),
        "acked": int((load.status > 0).sum()),
        "acked_stored": int(durable.sum()),
        "acked_duplicate": int((load.status == 2).sum()),
        "acked_rejected": int((load.status == 3).sum()),
        "unacked": int((load.status == 0).sum()),
        "throughput_per_s": float(durable.sum()) / active_s,
        "active_s": active_s,
        "peak_second": max(series.counts, default=0),
        "peak_minute": peak_window(series.counts, 60),
        "ack_p50_ms": latency.p50_ms,
        "ack_p99_ms": latency.p99_ms,
        "ack_p999_ms": latency.p999_ms,
        "ack_max_ms": latency.max_ms,
        "rejected_by_reason": _reasons(load),
        "retry_acks": load.num_retry_acks,
        "device_stream_errors": dict(load.stream_errors),
        "device_fatal_errors": dict(load.fatal_errors),
        "heartbeats": load.num_heartbeats,
        "offline_sessions": load.num_offline_sessions,
        "backlog_resent": load.num_backlog_sent,
        "streams_opened": load.num_streams_opened,
        "window_s": window_s,
        "cores": cores,
        "engine_cpu_s": engine_cpu_s,
        "gateway_cpu_s": cpu.get("gateway", 0.0),
        "shard_cpu_s": cpu.get("shard_host", 0.0),
        "store_cpu_s": cpu.get("store", 0.0),
        "ray_other_cpu_s": cpu.get("ray_other", 0.0),
        "loadgen_cpu_s": cpu.get("loadgen", 0.0),
        "bench_cpu_s": cpu.get("bench", 0.0),
        "machine_cpu_s": cpu.get("machine", 0.0),
        "others_cpu_s": max(cpu.get("machine", 0.0) - ours, 0.0),
        "loadgen_cpu_share": cpu.get("loadgen", 0.0) / (window_s * cores),
        "per_engine_cpu_s": float(durable.sum()) / engine_cpu_s
        if engine_cpu_s
        else None,
        "series": {
            "start_offset_s": 0,
            "stored_per_s": series.counts,
            "offered_per_s": [int(n) for n in offered[: len(series.counts)]],
            "p50_ms": series.p50_ms,
            "p99_ms": series.p99_ms,
        },
    }
    if check is not None:
        figures.update(
            {
                "stored_once": check.stored_once,
                "lost": check.lost,
                "duplicated": check.duplicated,
                "unacked_but_stored": check.unacked_stored,
                "rejected_but_stored": check.rejected_stored,
                "stray_rows": check.stray_rows,
                "rows": check.rows,
                "store_scan_s": check.scan_s,
            }
        )
    if scenario.burst is not None:
        took = load.ack_t - start
        all_acked = bool((load.status > 0).all())
        first_send = load.ack_t - load.latency_ms / 1000
        figures.update(
            {
                "burst_count": scenario.burst.count,
                "acked_within_5s": int((took <= BURST_DEADLINE_S).sum()),
                "burst_all_acked_s": float(np.nanmax(took)) if all_acked else None,
                "burst_last_first_send_s": float(np.nanmax(first_send) - start)
                if load.status.any()
                else None,
            }
        )
    return figures


def add_ceilings(
    figures: dict[str, Any], grpc_per_s: float | None, store_per_s: float | None
) -> None:
    """Add the ceilings and the efficiency against the lower of them."""
    figures["ceiling_grpc_per_s"] = grpc_per_s
    figures["ceiling_store_per_s"] = store_per_s
    known = [c for c in (grpc_per_s, store_per_s) if c]
    figures["ceiling_per_s"] = min(known) if known else None
    figures["efficiency"] = figures["throughput_per_s"] / min(known) if known else None


def add_verdicts(figures: dict[str, Any]) -> None:
    """Judge the figures against the scenario's targets."""
    figures["targets"] = judge(figures["scenario"], figures)


def clean_json(value: Any) -> Any:
    """NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(figures: dict[str, Any], path: Path) -> None:
    """Write the run's figures as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean_json(figures), indent=2, ensure_ascii=False))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def summary_text(figures: dict[str, Any]) -> str:
    """The plain summary printed at the end of a run."""
    f = figures
    lines = [
        f"scenario {f['scenario']}  {_fmt(f['seconds'])} s  devices "
        f"{_fmt(f['devices'])} ({_fmt(f['active_devices'])} active)",
        f"sent {_fmt(f['sent'])}  acked {_fmt(f['acked'])}  durable "
        f"{_fmt(f['acked_stored'])}  rejected {_fmt(f['acked_rejected'])}  "
        f"unacked {_fmt(f['unacked'])}",
        f"store: once {_fmt(f.get('stored_once'))}  lost {_fmt(f.get('lost'))}  "
        f"duplicated {_fmt(f.get('duplicated'))}",
        f"throughput {_fmt(f['throughput_per_s'], '/s')}  peak second "
        f"{_fmt(f['peak_second'])}  peak minute {_fmt(f['peak_minute'])}",
        f"ack p50 {_fmt(f['ack_p50_ms'], ' ms')}  p99 {_fmt(f['ack_p99_ms'], ' ms')}"
        f"  p99.9 {_fmt(f['ack_p999_ms'], ' ms')}",
        f"backpressure events {_fmt(f.get('backpressure_events'))}  retry acks "
        f"{_fmt(f['retry_acks'])}  rejected {f['rejected_by_reason']}",
        f"cpu s: engine {_fmt(f['engine_cpu_s'])} (gateway {_fmt(f['gateway_cpu_s'])}"
        f", shards {_fmt(f['shard_cpu_s'])}, store {_fmt(f['store_cpu_s'])})  ray "
        f"{_fmt(f['ray_other_cpu_s'])}  load {_fmt(f['loadgen_cpu_s'])} "
        f"({_fmt(100 * f['loadgen_cpu_share'], '%')} of machine)  others "
        f"{_fmt(f['others_cpu_s'])}",
        f"per engine cpu-second {_fmt(f['per_engine_cpu_s'])}  ceilings: grpc "
        f"{_fmt(f.get('ceiling_grpc_per_s'), '/s')} store "
        f"{_fmt(f.get('ceiling_store_per_s'), '/s')}  efficiency "
        f"{_fmt(100 * f['efficiency'] if f.get('efficiency') else None, '%')}",
    ]
    for key in ("connections_held", "acked_within_5s", "burst_all_acked_s"):
        if key in f:
            lines.append(f"{key} {_fmt(f[key])}")
    for key, verdict in f.get("targets", {}).items():
        met = {True: "MET", False: "MISSED", None: "not measured"}[verdict["met"]]
        lines.append(
            f"target {key}: {_fmt(verdict['measured'])} vs {_fmt(verdict['target'])}"
            f" -> {met}"
        )
    return "\n".join(lines)


def markdown_rows(figures: dict[str, Any]) -> list[str]:
    """Markdown table rows (figure | target | measured | verdict) of one run."""
    rows = []
    for key, verdict in figures.get("targets", {}).items():
        met = {True: "met", False: "**missed**", None: "not measured"}[verdict["met"]]
        rows.append(
            f"| {figures['scenario']} | {key} | {_fmt(verdict['target'])} | "
            f"{_fmt(verdict['measured'])} | {met} |"
        )
    return rows
