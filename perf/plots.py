"""PNG plots of a run's per-second throughput and ack latency (matplotlib)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import structlog

__all__ = ["plot_files", "plot_result"]

log = structlog.get_logger()


def _nan(values: list[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def plot_result(result: dict[str, Any], out: Path) -> Path:
    """Draw offered vs durable acks per second above p50/p99 latency per second.

    Args:
        result: a run's figures (as written by :func:`perf.report.write_json`).
        out: the PNG file to write.

    Returns:
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["series"]
    stored = series["stored_per_s"]
    seconds = list(range(len(stored)))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    top.step(seconds, series["offered_per_s"], where="post", label="offered/s")
    top.step(seconds, stored, where="post", label="acked durable/s")
    target = result.get("targets", {}).get("throughput_per_s", {}).get("target")
    if target:
        top.axhline(target, color="grey", linestyle="--", label=f"target {target:,}/s")
    top.set_ylabel("registrations / s")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.plot(seconds, _nan(series["p50_ms"]), label="p50")
    bottom.plot(seconds, _nan(series["p99_ms"]), label="p99")
    bound = result.get("targets", {}).get("ack_p99_ms", {}).get("target")
    if bound:
        bottom.axhline(
            bound, color="grey", linestyle="--", label=f"p99 target {bound} ms"
        )
    deadline = result.get("targets", {}).get("burst_all_acked_s", {}).get("target")
    if deadline:
        for axes in (top, bottom):
            axes.axvline(deadline, color="red", linestyle=":", label="ack deadline")
        top.legend(loc="upper right")
    bottom.set_yscale("log")
    bottom.set_ylabel("ack latency, ms (acks of that second)")
    bottom.set_xlabel("seconds from start of the offered load")
    bottom.legend(loc="upper left")
    bottom.grid(alpha=0.3, which="both")
    meta = result.get("meta", {})
    machine = meta.get("machine", {})
    figure.suptitle(
        f"{result['scenario']}: {result['throughput_per_s']:,.0f}/s durable, "
        f"p99 {result['ack_p99_ms'] or math.nan:,.0f} ms"
        f" — {meta.get('date', '')[:16]}"
        f", {machine.get('cores', '?')} cores, commit {meta.get('commit', '?')}"
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    log.info("plot_written", path=str(out))
    return out


def plot_files(paths: list[Path], out_dir: Path) -> list[Path]:
    """One PNG per result file, named after its scenario."""
    written = []
    for path in paths:
        result = json.loads(path.read_text())
        written.append(plot_result(result, out_dir / f"{result['scenario']}.png"))
    return written
