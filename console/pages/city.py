"""City page: registrations per minute against the previous round, peak,
milestones and ETA, live.

The chart's x axis is minutes since each round's start, so the previous
round's curve lies under the current one where it was at the same point.
"""

from __future__ import annotations

import datetime as dt

from fastapi.responses import Response
from nicegui import ui

from console.aggregate import (
    current_rate,
    eta_ms,
    milestones,
    peak_minute,
)
from console.auth import Page
from console.live import LiveState
from console.pages.frame import frame, hhmm
from console.rounds import align
from console.session import Gate
from engine.counters import MINUTE_MS, minute_of

__all__ = ["register"]


def _stat(caption: str, testid: str) -> ui.label:
    with ui.card().classes("min-w-48"):
        ui.label(caption).classes("text-sm text-gray-500")
        return ui.label("–").classes("text-2xl").props(f'data-testid="{testid}"')


def _count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n:,}"


def register(
    gate: Gate, live: LiveState, chart_minutes: int, targets: tuple[int, ...]
) -> None:
    """Add the city page at /."""

    @ui.page("/")
    def city_page() -> Response | None:
        user = gate.check(Page.DASHBOARD, "/")
        if isinstance(user, Response):
            return user
        frame("City", user)
        with ui.row():
            total = _stat("Total sampled (stored)", "total")
            expected = _stat("Expected population", "expected")
            rate = _stat("Rate now (per minute)", "rate")
            peak = _stat("Peak minute", "peak")
            eta = _stat("ETA to full population", "eta")
        with ui.row():
            marks = {
                t: _stat(f"{_count(t)} registered", f"milestone-{t}") for t in targets
            }
        chart = (
            ui.echart(
                {
                    "title": {"text": "Registrations stored per minute"},
                    "tooltip": {"trigger": "axis"},
                    "legend": {"top": 28},
                    "xAxis": {
                        "type": "category",
                        "name": "min since round start",
                        "nameLocation": "middle",
                        "nameGap": 28,
                        "data": [],
                    },
                    "yAxis": {"type": "value", "minInterval": 1},
                    "series": [
                        {"type": "bar", "name": "this round", "data": []},
                        {
                            "type": "line",
                            "name": "previous round",
                            "data": [],
                            "showSymbol": False,
                            "lineStyle": {"type": "dashed"},
                        },
                    ],
                    "animation": False,
                }
            )
            .classes("w-full h-96")
            .props('data-testid="city-chart"')
        )
        status = ui.label("").classes("text-sm text-gray-500")

        def show() -> None:
            snap = live.ingest
            if snap is None:
                status.set_text("waiting for the first reading…")
                return
            per_minute = dict(snap.city_per_minute)
            now_minute = minute_of(snap.taken_at_ms)
            start = minute_of(snap.round_start_ms or snap.window_start_ms)
            now_offset = max((now_minute - start) // MINUTE_MS, 0)
            offsets = list(
                range(max(now_offset - chart_minutes + 1, 0), now_offset + 1)
            )
            current = align(per_minute, start)
            previous = snap.previous.by_offset if snap.previous else {}
            chart.options["xAxis"]["data"] = [
                f"{o} ({hhmm(start + o * MINUTE_MS)})" for o in offsets
            ]
            chart.options["series"][0]["data"] = [current.get(o, 0) for o in offsets]
            chart.options["series"][1]["data"] = [previous.get(o, 0) for o in offsets]
            chart.update()
            total.set_text(f"{snap.registered:,}")
            expected.set_text(f"{snap.population:,}")
            now_rate = current_rate(per_minute, snap.taken_at_ms)
            rate.set_text(f"{now_rate:,.0f}")
            best = peak_minute(per_minute)
            peak.set_text(
                "–" if best is None else f"{best.count:,} at {hhmm(best.minute_ms)}"
            )
            left = eta_ms(snap.registered, snap.population, now_rate)
            if left is None:
                eta.set_text("– (no registrations arriving)")
            else:
                done_at = dt.datetime.fromtimestamp((snap.taken_at_ms + left) / 1000)
                eta.set_text(f"{_duration(left)} (≈ {done_at:%a %H:%M})")
            for mark in milestones(
                per_minute, targets, done=snap.registered, rate_per_minute=now_rate
            ):
                label = marks[mark.target]
                if mark.reached_ms is not None:
                    label.set_text(
                        f"reached {hhmm(mark.reached_ms)}"
                        f" (+{(mark.reached_ms - start) // MINUTE_MS} min)"
                    )
                elif mark.eta_ms is None:
                    label.set_text("– (no registrations arriving)")
                else:
                    label.set_text(f"in {_duration(mark.eta_ms)}")
            errors = "; ".join(snap.errors)
            if snap.previous is None:
                before = f"no round {snap.round - 1} data"
            else:
                before = (
                    f"round {snap.previous.round} from"
                    f" {hhmm(snap.previous.start_ms)}:"
                    f" {snap.previous.total:,} registered"
                )
            taken = dt.datetime.fromtimestamp(snap.taken_at_ms / 1000)
            status.set_text(
                f"Round {snap.round} from {hhmm(start)} · as of {taken:%H:%M:%S}"
                f" · counted since {hhmm(snap.window_start_ms)} · previous: {before}"
                + (f" · {errors}" if errors else "")
            )

        show()
        ui.timer(live.refresh_s, show)
        return None


def _duration(ms: int) -> str:
    minutes = ms // MINUTE_MS
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest:02d} min"
    return f"{hours // 24} d {hours % 24} h"
