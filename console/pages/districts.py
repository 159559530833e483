"""Districts page: registered, coverage, a per-minute sparkline and hourly
totals per district, each linking to its sites and devices."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.responses import Response
from nicegui import ui

from console.aggregate import coverage
from console.auth import Page
from console.live import LiveState
from console.pages.frame import frame, hhmm
from console.session import Gate
from console.sources import DistrictView
from engine.city import City
from engine.counters import MINUTE_MS, minute_of

__all__ = ["register"]

_HEADERS = ("District", "Registered", "Expected", "Coverage", "Rejected", "Per minute")


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
                for key in ("registered", "expected", "coverage", "rejected"):
                    cells[key] = ui.label("–").props(f'data-testid="{key}-{code}"')
                cells["expected"].set_text(f"{district.population:,}")
                rows[code] = cells
                sparks[code] = _sparkline(code)
        status = ui.label("").classes("text-sm text-gray-500")
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
                share = coverage(view.registered, view.population)
                cells["coverage"].set_text("–" if share is None else f"{share:.2%}")
                cells["rejected"].set_text(str(view.rejected))
                spark = sparks[view.code]
                spark.options["series"][0]["data"] = [
                    view.per_minute.get(m, 0) for m in minutes
                ]
                spark.options["xAxis"]["data"] = minutes
                spark.update()
            _show_hours(hours_table, snap.districts)
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
