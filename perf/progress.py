"""The progress line a long bench run prints every few seconds."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TextIO

from perf.stats import percentile

__all__ = ["ProgressLine", "Tick", "format_tick"]


@dataclass(frozen=True, slots=True)
class Tick:
    """What happened in one progress interval."""

    phase: str
    elapsed_s: float
    total_s: float
    interval_s: float
    sent: int
    acked: int
    new_sent: int
    new_acked: int
    latencies_ms: list[float]
    open_streams: int | None
    inflight: int | None
    backpressure: int | None
    engine_cpu_s: float
    load_cpu_s: float
    machine_cpu_s: float
    cores: int


def _pct(cpu_s: float, interval_s: float) -> str:
    return f"{100 * cpu_s / interval_s:.0f}%" if interval_s > 0 else "-"


def format_tick(tick: Tick) -> str:
    """One progress line: rates, latency, gateway state and CPU in the interval."""
    rate_in = tick.new_sent / tick.interval_s if tick.interval_s else 0.0
    rate_out = tick.new_acked / tick.interval_s if tick.interval_s else 0.0
    p99 = percentile(tick.latencies_ms, 99) if tick.latencies_ms else math.nan
    p99_text = "-" if math.isnan(p99) else f"{p99:.0f}"
    gateway = "gateway -"
    if tick.open_streams is not None:
        gateway = (
            f"streams {tick.open_streams:,} inflight {tick.inflight:,} "
            f"bp {tick.backpressure:,}"
        )
    return (
        f"[{tick.phase} {tick.elapsed_s:5.0f}/{tick.total_s:.0f}s] "
        f"sent {tick.sent:,} ({rate_in:,.0f}/s) acked {tick.acked:,} "
        f"({rate_out:,.0f}/s) p99 {p99_text} ms | {gateway} | cpu engine "
        f"{_pct(tick.engine_cpu_s, tick.interval_s)} load "
        f"{_pct(tick.load_cpu_s, tick.interval_s)} machine "
        f"{_pct(tick.machine_cpu_s, tick.interval_s)} of {tick.cores * 100}%"
    )


class ProgressLine:
    """Prints a :class:`Tick` every ``every_s`` seconds to ``out`` (stderr).

    Args:
        every_s: seconds between lines (0: silent).
        out: stream to write to.
    """

    def __init__(self, every_s: float = 5.0, out: TextIO | None = None) -> None:
        self.every_s = every_s
        self.out = out or sys.stderr

    def show(self, tick: Tick) -> None:
        """Write one line."""
        if self.every_s > 0:
            print(format_tick(tick), file=self.out, flush=True)
