"""Districts page: registered, coverage, a per-minute sparkline, the sample
journey's stages and hourly totals per district, each linking to its sites
and devices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from fastapi.responses import Response
from nicegui import ui

from console.auth import Page
from console.coverage import CoverageView
from console.journey import COLUMNS, WAITS, JourneySnapshot, format_wait
from console.live import LiveState
from console.pages.frame import frame, hhmm
from console.session import Gate
from console.sources import DistrictView
from engine.city import City
from engine.counters import MINUTE_MS, minute_of

__all__ = ["register"]

_HEADERS = (
    "District",
    "Registered",
    "Sampled",
    "Expected",
    "Coverage",
    "Rejected",
    "Per minute",
)
_STAGE_HEADERS = {
    "registered": "Registered",
    "sealed": "Sealed",
    "in_transit": "In transit",
    "received": "Received",
    "tested": "Tested",
    "positive": "Positive",
}
_TOTAL = "total"


def _sparkline(code: str) -> ui.echart:
    return (
        ui.echart(
            {
                "grid": {"left": 0, "right": 0, "top": 2, "bottom": 2},
                "xAxis": {"type": "category", "show": False, "data": []},
                "yAxis": {"type": "value", "show": False, "min": 0},
                "series": [
                    {
                        "type": "line",
                        "data": [],
                        "showSymbol": False,
                        "areaStyle": {"opacity": 0.2},
                    }
                ],
                "animation": False,
            }
        )
        .classes("w-48 h-10")
        .props(f'data-testid="spark-{code}"')
    )


def register(gate: Gate, live: LiveState, city: City, chart_minutes: int) -> None:
    """Add the districts page at /districts."""

    @ui.page("/districts")
    def districts_page() -> Response | None:
        user = gate.check(Page.DASHBOARD, "/districts")
        if isinstance(user, Response):
            return user
        frame("Districts", user)
        rows: dict[str, dict[str, ui.label]] = {}
        sparks: dict[str, ui.echart] = {}
        with ui.grid(columns=len(_HEADERS)).classes("items-center gap-x-6 gap-y-1"):
            for header in _HEADERS:
                ui.label(header).classes("font-semibold")
            for code, district in city.districts.items():
                ui.link(f"{code} {district.name}", f"/districts/{code}").props(
                    f'data-testid="drill-{code}"'
                )
                cells = {}
                for key in ("registered", "sampled", "expected", "coverage"):
                    cells[key] = ui.label("–").props(f'data-testid="{key}-{code}"')
                cells["rejected"] = ui.label("–").props(
                    f'data-testid="rejected-{code}"'
                )
                cells["expected"].set_text(f"{district.population:,}")
                rows[code] = cells
                sparks[code] = _sparkline(code)
        status = ui.label("").classes("text-sm text-gray-500")
        source = ui.label("").props('data-testid="coverage-source"').classes("text-sm")
        ui.label("Sample journey (store counts)").classes("text-lg")
        stages = _stage_grid(city)
        stage_status = ui.label("").classes("text-sm text-gray-500")
        ui.label("Registered per hour (store counts)").classes("text-lg")
        hours_table = ui.table(columns=[], rows=[], row_key="district").props(
            'data-testid="hourly" dense flat'
        )

        def show() -> None:
            snap = live.ingest
            if snap is None:
                status.set_text("waiting for the first reading…")
                return
            now_minute = minute_of(snap.taken_at_ms)
            minutes = [
                now_minute - i * MINUTE_MS for i in reversed(range(chart_minutes))
            ]
            for view in snap.districts:
                cells = rows.get(view.code)
                if cells is None:
                    continue
                cells["registered"].set_text(str(view.registered))
                cells["rejected"].set_text(str(view.rejected))
                spark = sparks[view.code]
                spark.options["series"][0]["data"] = [
                    view.per_minute.get(m, 0) for m in minutes
                ]
                spark.options["xAxis"]["data"] = minutes
                spark.update()
            _show_hours(hours_table, snap.districts)
            _show_coverage(rows, source, live.coverage, live.coverage_error)
            _show_stages(stages, stage_status, live.stages)
            status.set_text(
                "Registered and per-minute counts: exact, from the store "
                "(registrations_by_minute). Rejected: acked by the gateway "
                "since it started. " + "; ".join(snap.errors)
            )

        show()
        ui.timer(live.refresh_s, show)
        return None


def _show_hours(table: ui.table, views: Sequence[DistrictView]) -> None:
    hours = sorted({hour for view in views for hour in view.hourly})
    table.columns = [
        {"name": "district", "label": "District", "field": "district", "align": "left"},
        *(
            {"name": str(h), "label": hhmm(h), "field": str(h), "align": "right"}
            for h in hours
        ),
        {"name": "total", "label": "Total", "field": "total", "align": "right"},
    ]
    table.rows = [
        {"district": f"{v.code} {v.name}", "total": f"{v.registered:,}"}
        | {str(h): f"{v.hourly.get(h, 0):,}" for h in hours}
        for v in views
    ]
    table.update()


def _stage_grid(city: City) -> dict[str, dict[str, ui.label]]:
    headers = [*_STAGE_HEADERS.values(), *(f"Mean {doing}" for _, doing in WAITS)]
    cells: dict[str, dict[str, ui.label]] = {}
    with ui.grid(columns=1 + len(headers)).classes("items-center gap-x-6 gap-y-1"):
        ui.label("District").classes("font-semibold")
        for header in headers:
            ui.label(header).classes("font-semibold")
        names = {code: f"{code} {d.name}" for code, d in city.districts.items()}
        for code, name in [*names.items(), (_TOTAL, "City")]:
            ui.label(name).classes("font-semibold" if code == _TOTAL else "")
            row = {
                column: ui.label("–").props(f'data-testid="stage-{column}-{code}"')
                for column in COLUMNS
            }
            for stage, _ in WAITS:
                row[f"wait-{stage}"] = ui.label("–").props(
                    f'data-testid="wait-{stage}-{code}"'
                )
            cells[code] = row
    return cells


def _show_stages(
    cells: dict[str, dict[str, ui.label]],
    status: ui.label,
    snap: JourneySnapshot | None,
) -> None:
    if snap is None:
        status.set_text("waiting for the first journey reading…")
        return
    for code, totals in [*snap.districts.items(), (_TOTAL, snap.total)]:
        row = cells.get(code)
        if row is None:
            continue
        for column in COLUMNS:
            row[column].set_text(f"{totals.count(column):,}")
        for stage, _ in WAITS:
            row[f"wait-{stage}"].set_text(format_wait(totals.mean_wait_ms(stage)))
    status.set_text(
        f"Round {snap.round} since {hhmm(snap.window_start_ms)}: per-minute"
        " partitions of registrations_by_minute and stage_by_minute. In transit"
        " = dispatched − received. A mean is the time tubes spent before"
        " reaching the stage. " + "; ".join(snap.errors)
    )


def _show_coverage(
    rows: dict[str, dict[str, ui.label]],
    source: ui.label,
    view: CoverageView | None,
    error: str,
) -> None:
    if view is None:
        waiting = "Sampled and coverage: waiting for the first reading… "
        source.set_text(waiting + error)
        return
    for code, cells in rows.items():
        cells["sampled"].set_text(f"{view.sampled.get(code, 0):,}")
        cells["expected"].set_text(f"{view.expected.get(code, 0):,}")
        share = view.share(code)
        cells["coverage"].set_text("–" if share is None else f"{share:.2%}")
    source.set_text(
        "Sampled: distinct people in the round's participation bitmaps, as"
        f" the shard hosts last flushed them (read at {_clock(view.taken_at_ms)}). "
        + view.describe()
        + (f" Last read failed: {error}" if error else "")
    )


def _clock(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%H:%M:%S")
