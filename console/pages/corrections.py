"""Corrections pages: the open queue, a phone-call form, and one request's candidates.

Operators (and SREs) only. Viewing a request's candidates is recorded in its
audit trail, like every resolution; candidates show masked numbers and names
and whether each matches the request, never a stranger's plaintext.
"""

from __future__ import annotations

import datetime as dt

import structlog
from fastapi.responses import Response
from nicegui import ui

from console.auth import Page, User
from console.lookup import PersonLookup
from console.pages.frame import frame
from console.session import Gate
from engine.corrections import CorrectionInput, CorrectionState
from engine.documents import DocumentType
from engine.exceptions import IngestError
from engine.lookup import Actor

__all__ = ["register"]

log = structlog.get_logger()

_QUEUE_COLUMNS = ("submitted", "id", "number", "site", "source", "state")
_CANDIDATE_COLUMNS = (
    "registration",
    "source",
    "name",
    "name_matches",
    "number",
    "id_edits",
    "round",
    "site",
    "tube",
    "sampled",
    "detail",
)


def _local(epoch_ms: int) -> str:
    if not epoch_ms:
        return ""
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%Y-%m-%d %H:%M")


def _actor(user: User) -> Actor:
    return Actor("operator", user.name)


def register(gate: Gate, desk: PersonLookup) -> None:
    """Add /corrections and /corrections/{id}."""

    @ui.page("/corrections")
    async def queue_page() -> Response | None:
        user = gate.check(Page.OPERATOR, "/corrections")
        if isinstance(user, Response):
            return user
        frame("Operator: corrections", user)
        queue = await desk.corrections()
        state = ui.select(
            [s.value for s in CorrectionState], value="OPEN", label="State"
        ).props('data-testid="queue-state"')
        table = ui.table(
            columns=[
                {"name": k, "label": k.title(), "field": k} for k in _QUEUE_COLUMNS
            ],
            rows=[],
            row_key="id",
        ).props('data-testid="queue"')
        table.add_slot(
            "body-cell-id",
            '<q-td :props="props"><a :href="\'/corrections/\' + props.value"'
            ' data-testid="open-request">{{ props.value.slice(0, 8) }}</a></q-td>',
        )

        async def refresh() -> None:
            items = await queue.queue(CorrectionState(state.value))
            table.rows = [
                {
                    "submitted": _local(c.submitted_at_ms),
                    "id": c.id,
                    "number": c.masked,
                    "site": c.site,
                    "source": c.source,
                    "state": c.state,
                }
                for c in items
            ]
            table.update()

        state.on_value_change(refresh)
        await refresh()

        ui.label("Take a request by phone").classes("text-xl mt-6")
        with ui.row().classes("items-end"):
            name = ui.input("Name").props('data-testid="form-name"')
            doc_type = ui.select(
                {int(t): t.name for t in DocumentType},
                value=int(DocumentType.RESIDENT_ID_CARD),
                label="Document type",
            )
            number = ui.input("Document number").props('data-testid="form-number"')
            phone = ui.input("Phone").props('data-testid="form-phone"')
        with ui.row().classes("items-end"):
            round_no = ui.number("Round (0: unknown)", value=0, format="%d")
            site = ui.input("Site id (optional)").props('data-testid="form-site"')
            when = ui.input("Sampled at, YYYY-MM-DD HH:MM (optional)").props(
                'data-testid="form-when"'
            )
        message = ui.label("").props('data-testid="form-result"')

        async def submit() -> None:
            try:
                sampled_ms = 0
                if (when.value or "").strip():
                    moment = dt.datetime.strptime(when.value.strip(), "%Y-%m-%d %H:%M")
                    sampled_ms = int(moment.timestamp() * 1000)
                cid, _ = await queue.submit(
                    _actor(user),
                    CorrectionInput(
                        name=name.value or "",
                        doc_type=int(doc_type.value),
                        number=number.value or "",
                        phone=phone.value or "",
                        round=int(round_no.value or 0),
                        site=(site.value or "").strip(),
                        sampled_at_ms=sampled_ms,
                    ),
                )
            except ValueError:
                message.set_text("Refused: sampled at must be YYYY-MM-DD HH:MM")
                return
            except IngestError as exc:
                message.set_text(f"Refused: {exc.message}")
                return
            for field in (name, number, phone, site, when):
                field.set_value("")
            message.set_text(f"Queued as {cid}")
            await refresh()

        ui.button("Queue request", on_click=submit).props('data-testid="form-submit"')
        return None

    @ui.page("/corrections/{correction_id}")
    async def request_page(correction_id: str) -> Response | None:
        user = gate.check(Page.OPERATOR, f"/corrections/{correction_id}")
        if isinstance(user, Response):
            return user
        frame("Operator: correction request", user)
        ui.link("Back to the queue", "/corrections")
        queue = await desk.corrections()
        finder = await desk.finder()
        try:
            request = await queue.get(correction_id)
        except IngestError as exc:
            ui.label(exc.message).props('data-testid="request-missing"')
            return None
        await queue.record(request.id, f"operator:{user.name}", "viewed")
        log.info("correction_viewed", user=user.name, correction=request.id)

        ui.label(
            f"{request.masked_name} · {request.masked} · phone {request.masked_phone}"
            f" · round {request.round or '?'} · site {request.site or '?'}"
            f" · sampled {_local(request.sampled_at_ms) or '?'}"
        ).props('data-testid="request-summary"')
        status = ui.label(f"State: {request.state.value}").props(
            'data-testid="request-state"'
        )
        report = await finder.find(request, dt.date.today())
        for hint in report.notes:
            ui.label(hint).classes("text-sm text-amber-700")
        ui.label(
            f"{len(report.candidates)} candidate(s); "
            f"{report.variants_checked} numbers checked"
        ).props('data-testid="candidate-count"')
        table = ui.table(
            columns=[
                {"name": k, "label": k.replace("_", " ").title(), "field": k}
                for k in _CANDIDATE_COLUMNS
            ],
            rows=[
                {
                    "registration": c.registration_id,
                    "source": c.source,
                    "name": c.masked_name,
                    "name_matches": "yes" if c.name_matches else "no",
                    "number": c.masked_number,
                    "id_edits": c.id_edits,
                    "round": c.round,
                    "site": c.site,
                    "tube": c.tube,
                    "sampled": _local(c.captured_at_ms),
                    "detail": c.detail,
                }
                for c in report.candidates
            ],
            row_key="registration",
            selection="single",
        ).props('data-testid="candidates"')
        note = ui.input("Note (required to reject or mark not sampled)").props(
            'data-testid="resolve-note"'
        )

        async def act(action: str) -> None:
            try:
                if action == "merge":
                    if not table.selected:
                        status.set_text("Select a candidate to merge into")
                        return
                    result = await queue.merge(
                        request.id,
                        _actor(user),
                        str(table.selected[0]["registration"]),
                        note.value or "",
                    )
                    status.set_text(f"State: MERGED ({result.describe()})")
                elif action == "reject":
                    await queue.reject(request.id, _actor(user), note.value or "")
                    status.set_text("State: REJECTED")
                else:
                    await queue.mark_not_sampled(
                        request.id, _actor(user), note.value or ""
                    )
                    status.set_text("State: NOT_SAMPLED")
            except IngestError as exc:
                status.set_text(f"Refused: {exc.message}")

        with ui.row():
            ui.button("Merge into selected", on_click=lambda: act("merge")).props(
                'data-testid="merge"'
            )
            ui.button("Reject", on_click=lambda: act("reject")).props(
                'data-testid="reject"'
            )
            ui.button("Not sampled", on_click=lambda: act("not_sampled")).props(
                'data-testid="not-sampled"'
            )

        ui.label("History").classes("text-xl mt-6")
        ui.table(
            columns=[
                {"name": k, "label": k.title(), "field": k}
                for k in ("at", "actor", "action", "detail")
            ],
            rows=[
                {
                    "at": _local(e.at_ms),
                    "actor": e.actor,
                    "action": e.action,
                    "detail": e.detail,
                }
                for e in await queue.events(request.id)
            ],
        ).props('data-testid="events"')
        return None
