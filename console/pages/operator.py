"""Operator page: audited, masked ID look-ups; command-role users are refused."""

from __future__ import annotations

import structlog
from fastapi.responses import Response
from nicegui import ui

from console.auth import Page
from console.lookup import PersonLookup
from console.pages.frame import frame
from console.session import Gate
from engine.documents import DocumentType

__all__ = ["register"]

log = structlog.get_logger()


def register(gate: Gate, lookup: PersonLookup) -> None:
    """Add the operator page at /operator."""

    @ui.page("/operator")
    def operator_page() -> Response | None:
        user = gate.check(Page.OPERATOR, "/operator")
        if isinstance(user, Response):
            return user
        frame("Operator: ID look-up", user)
        ui.link("Corrections queue", "/corrections").props(
            'data-testid="corrections-link"'
        )
        ui.label("Every look-up is recorded with your name.").classes("text-sm")
        with ui.row().classes("items-end"):
            doc_type = ui.select(
                {int(t): t.name for t in DocumentType},
                value=int(DocumentType.RESIDENT_ID_CARD),
                label="Document type",
            ).props('data-testid="doc-type"')
            number = ui.input("Resident ID number").props('data-testid="id-number"')
        result = ui.label("").props('data-testid="lookup-result"')
        table = ui.table(
            columns=[
                {"name": k, "label": k.title(), "field": k}
                for k in ("sampled", "round", "district", "site", "tube")
            ],
            rows=[],
        ).props('data-testid="lookup-table"')

        async def search() -> None:
            try:
                found = await lookup.find(
                    user.name, number.value or "", int(doc_type.value)
                )
            except Exception as exc:  # noqa: BLE001 - shown to the operator
                result.set_text(f"Look-up failed: {exc}")
                return
            log.info("id_lookup", user=user.name, masked=found.masked)
            number.set_value("")
            if not found.valid:
                result.set_text(f"{found.masked}: not valid ({found.reason})")
                table.rows = []
            elif not found.rows:
                result.set_text(f"{found.masked}: no record (0 registrations)")
                table.rows = []
            else:
                result.set_text(f"{found.masked}: {len(found.rows)} registration(s)")
                table.rows = list(found.rows)
            table.update()

        number.on("keydown.enter", search)
        ui.button("Look up", on_click=search).props('data-testid="lookup"')
        return None
