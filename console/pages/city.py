"""City page: registrations per minute, peak, total and ETA, live."""

from __future__ import annotations

import datetime as dt

from fastapi.responses import Response
from nicegui import ui

from console.aggregate import (
    city_per_minute,
    current_rate,
    eta_ms,
    peak_minute,
)
from console.auth import Page
from console.live import LiveState
from console.pages.frame import frame, hhmm
from console.session import Gate
from engine.counters import MINUTE_MS, minute_of

__all__ = ["register"]


def _stat(caption: str, testid: str) -> ui.label:
    with ui.card().classes("min-w-48"):
        ui.label(caption).classes("text-sm text-gray-500")
        return ui.label("–").classes("text-2xl").props(f'data-testid="{testid}"')


def register(gate: Gate, live: LiveState, chart_minutes: int) -> None:
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
        chart = (
            ui.echart(
                {
                    "title": {"text": "Registrations stored per minute"},
                    "tooltip": {"trigger": "axis"},
                    "xAxis": {"type": "category", "data": []},
                    "yAxis": {"type": "value", "minInterval": 1},
                    "series": [{"type": "bar", "name": "stored", "data": []}],
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
            per_minute = city_per_minute(d.per_minute for d in snap.districts)
            now_minute = minute_of(snap.taken_at_ms)
            minutes = [
                now_minute - i * MINUTE_MS for i in reversed(range(chart_minutes))
            ]
            chart.options["xAxis"]["data"] = [hhmm(m) for m in minutes]
            chart.options["series"][0]["data"] = [per_minute.get(m, 0) for m in minutes]
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
            errors = "; ".join(snap.errors)
            taken = dt.datetime.fromtimestamp(snap.taken_at_ms / 1000)
            status.set_text(
                f"Round {snap.round} · as of {taken:%H:%M:%S}"
                f" · counted since {hhmm(snap.window_start_ms)}"
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
