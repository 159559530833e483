"""Tube journey page: one tube's round, place, stage, result and timeline.

Open to every role. A search is checked as a tube barcode first (length,
marker, digits, check character); the tube is then read from the store
(``tubes``, the count of ``registrations_by_tube`` and ``tube_events``).
Residents are shown as a count only, never names or document numbers.
"""

from __future__ import annotations

import datetime as dt

import structlog
from fastapi.responses import Response
from nicegui import ui

from console.auth import Page
from console.journey_source import JourneySource, TubeAnswer
from console.pages.frame import frame
from console.session import Gate
from sieve.v1 import journey_pb2

__all__ = ["register", "timeline_rows"]

log = structlog.get_logger()

_FACTS = (
    ("round", "Round"),
    ("district", "District"),
    ("site", "Site"),
    ("capacity", "Capacity"),
    ("bound", "Residents bound"),
    ("stage", "Current stage"),
    ("result", "Result"),
)
_TIMELINE = ("stage", "at", "actor", "box", "detail")
_ORDER = {"SEALED": 0, "BOXED": 1, "DISPATCHED": 2, "RECEIVED": 3, "RESULT": 4}
"""Journey order, for events stamped in the same millisecond."""


def _local(epoch_ms: int) -> str:
    if not epoch_ms:
        return ""
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def timeline_rows(view: journey_pb2.TubeView) -> list[dict[str, str]]:
    """The tube's events as table rows, oldest first (journey order on ties)."""
    events = sorted(
        view.events, key=lambda e: (e.at_ms, _ORDER.get(e.stage, len(_ORDER)))
    )
    return [
        {
            "key": str(index),
            "stage": event.stage,
            "at": _local(event.at_ms),
            "actor": event.actor,
            "box": event.box,
            "detail": event.detail,
        }
        for index, event in enumerate(events)
    ]


def register(gate: Gate, journey: JourneySource) -> None:
    """Add the tube journey page at /tubes."""

    @ui.page("/tubes")
    async def tubes_page(code: str = "") -> Response | None:
        user = gate.check(Page.DASHBOARD, "/tubes")
        if isinstance(user, Response):
            return user
        frame("Tube journey", user)
        with ui.row().classes("items-end gap-4"):
            box = ui.input("Tube barcode", value=code).props(
                'data-testid="tube-code" clearable'
            )
            search = ui.button("Show").props('data-testid="tube-search"')
        message = ui.label("").props('data-testid="tube-message"')
        facts: dict[str, ui.label] = {}
        with ui.grid(columns=2).classes("gap-x-6 gap-y-1") as fact_grid:
            for key, label in _FACTS:
                ui.label(label).classes("font-semibold")
                facts[key] = ui.label("").props(f'data-testid="tube-{key}"')
        fact_grid.set_visibility(False)
        ui.label("Timeline").classes("text-lg")
        table = ui.table(
            columns=[
                {"name": k, "label": k.title(), "field": k, "align": "left"}
                for k in _TIMELINE
            ],
            rows=[],
            row_key="key",
        ).props('data-testid="timeline" dense flat')

        def show(answer: TubeAnswer) -> None:
            view = answer.view
            table.rows = []
            fact_grid.set_visibility(False)
            if answer.error:
                message.set_text(f"Not a tube barcode: {answer.error}")
            elif view is None or not view.known:
                message.set_text(f"No such tube: {answer.code}")
            else:
                message.set_text(answer.code)
                values = {
                    "round": str(view.round),
                    "district": view.district,
                    "site": view.site,
                    "capacity": str(view.capacity),
                    "bound": str(view.bound),
                    "stage": view.stage or "PRINTED",
                    "result": view.result or "none yet",
                }
                for key, label in facts.items():
                    label.set_text(values[key])
                fact_grid.set_visibility(True)
                table.rows = timeline_rows(view)
            table.update()

        async def find() -> None:
            raw = str(box.value or "")
            if not raw.strip():
                message.set_text("Type or scan a tube barcode.")
                return
            try:
                answer = await journey.tube(raw)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                log.warning("tube_unread", error=str(exc))
                message.set_text(f"Store unavailable, try again: {exc}")
                return
            show(answer)

        search.on_click(find)
        box.on("keydown.enter", find)
        if code:
            await find()
        return None
