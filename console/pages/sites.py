"""District drill-down: each site's registered count and its devices.

Per-site counts and devices come from the gateways (``ListDevices``), the
only place that sees devices live; they cover what the gateways stored since
they started, summed over gateways.
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse, Response
from nicegui import ui

from console.auth import Page
from console.live import LiveState
from console.pages.frame import frame
from console.session import Gate
from engine.city import City

__all__ = ["register"]


def _ago(now_ms: int, then_ms: int) -> str:
    seconds = max(now_ms - then_ms, 0) // 1000
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def register(gate: Gate, live: LiveState, city: City) -> None:
    """Add the drill-down at /districts/{code}."""

    @ui.page("/districts/{code}")
    async def sites_page(code: str) -> Response | None:
        user = gate.check(Page.DASHBOARD, f"/districts/{code}")
        if isinstance(user, Response):
            return user
        district = city.districts.get(code)
        if district is None:
            return HTMLResponse(
                f"<h1>404</h1><p>No district {code!r} in the city file.</p>",
                status_code=404,
            )
        frame(f"District {code} {district.name}: sites and devices", user)
        names = {s.id: s.name for s in city.sites.values() if s.district == code}
        sites = ui.table(
            columns=[
                {"name": "site", "label": "Site", "field": "site", "align": "left"},
                {"name": "name", "label": "Name", "field": "name", "align": "left"},
                {"name": "stored", "label": "Registered", "field": "stored"},
                {"name": "seen", "label": "Devices seen", "field": "seen"},
                {"name": "online", "label": "Online", "field": "online"},
            ],
            rows=[],
            row_key="site",
        ).props('data-testid="sites" dense flat')
        ui.label("Devices").classes("text-lg")
        devices = ui.table(
            columns=[
                {
                    "name": "device",
                    "label": "Device",
                    "field": "device",
                    "align": "left",
                },
                {"name": "site", "label": "Site", "field": "site", "align": "left"},
                {"name": "online", "label": "Online", "field": "online"},
                {"name": "last", "label": "Last seen", "field": "last"},
                {"name": "count", "label": "Registered", "field": "count"},
            ],
            rows=[],
            row_key="device",
            pagination=50,
        ).props('data-testid="devices" dense flat')
        status = ui.label("").classes("text-sm text-gray-500")

        async def show() -> None:
            try:
                found = await live.devices(code)
            except ValueError as exc:
                status.set_text(f"The gateways refused: {exc}")
                return
            snap = live.ingest
            now_ms = snap.taken_at_ms if snap else 0
            sites.rows = [
                {
                    "site": row.site,
                    "name": names.get(row.site, ""),
                    "stored": row.stored,
                    "seen": row.devices_seen,
                    "online": row.devices_online,
                }
                for row in found.sites
            ]
            sites.update()
            devices.rows = [
                {
                    "device": row.device,
                    "site": row.site,
                    "online": "online" if row.online else "offline",
                    "last": _ago(now_ms, row.last_seen_ms) if now_ms else "",
                    "count": row.registrations,
                }
                for row in found.devices
            ]
            devices.update()
            status.set_text(
                "Registered per site and devices: acked STORED by the gateways "
                "since they started (district totals are on /districts, from the "
                "store). Online: a stream is open now. " + "; ".join(found.errors)
            )

        await show()
        ui.timer(live.refresh_s, show)
        return None
