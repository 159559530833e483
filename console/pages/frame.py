"""The frame around every console page: title, navigation and the user."""

from __future__ import annotations

import datetime as dt

from nicegui import ui

from console.auth import Page, User, can_open

__all__ = ["frame", "hhmm", "level_classes"]

_LEVEL_CLASSES = {
    "ok": "text-green-700",
    "amber": "text-amber-600",
    "red": "text-red-600 font-bold",
}


def level_classes(level: str) -> str:
    """Tailwind classes colouring a threshold level."""
    return _LEVEL_CLASSES.get(level, "")


def hhmm(epoch_ms: int) -> str:
    """Local wall-clock time of an epoch-milliseconds instant."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%H:%M")


def frame(title: str, user: User) -> None:
    """Draw the header with links to the pages this user may open."""
    ui.page_title(f"Sieve · {title}")
    with ui.header().classes("items-center gap-6 bg-slate-800"):
        ui.label("Sieve operations").classes("text-lg font-bold")
        ui.link("City", "/").classes("text-white")
        ui.link("Districts", "/districts").classes("text-white")
        ui.link("Saturation", "/saturation").classes("text-white")
        ui.link("Tubes", "/tubes").classes("text-white")
        if can_open(user.role, Page.OPERATOR):
            ui.link("Operator", "/operator").classes("text-white")
            ui.link("Corrections", "/corrections").classes("text-white")
        ui.space()
        ui.label(f"{user.name} ({user.role})").props('data-testid="user"')
        ui.link("Log out", "/logout").classes("text-white")
    ui.label(title).classes("text-2xl font-semibold")
