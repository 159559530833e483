"""The corrections queue: residents' reports of a misread ID or name, and outcomes.

A resident who finds no record of their sampling submits name, document and
phone (over gRPC, or through an operator taking the call). The request is
sealed like every personal field and queued ``OPEN``. An operator resolves
it one of three ways:

* merge it into a registration, which takes the request's name and number
  (:class:`~engine.corrections_merge.RegistrationEditor` re-seals it, moves its
  index rows and keeps the previous values);
* reject it (nothing in the store matches and the caller is not believed);
* mark it not sampled (the person was never sampled and must be).

State changes go through lightweight transactions on the request's row, so
two operators cannot resolve one request two ways. A merge first moves the
request to ``MERGING`` naming its target, does the idempotent work, then
``MERGED``; a merge interrupted half way is finished by merging again into
the same registration. Every step is written to ``correction_events``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from engine.city import City
from engine.correction_types import (
    Correction,
    CorrectionConflict,
    CorrectionEvent,
    CorrectionInput,
    CorrectionNotFound,
    CorrectionState,
    CorrectionSummary,
    normalize_phone,
)
from engine.corrections_merge import MergeResult, RegistrationEditor
from engine.lookup import Actor, RequestInvalid, epoch_ms, parse_document
from engine.pii import PiiCipher, mask_document
from engine.store import CqlStore
from engine.validation import MAX_ROUND, Rejection, check_name

__all__ = [
    "Correction",
    "CorrectionConflict",
    "CorrectionEvent",
    "CorrectionInput",
    "CorrectionNotFound",
    "CorrectionQueue",
    "CorrectionState",
    "CorrectionSummary",
    "normalize_phone",
]

log = structlog.get_logger()

MAX_NOTE_CHARS = 500

_INSERT = (
    "INSERT INTO {ks}.corrections (correction_id, state, submitted_at, source,"
    " name_sealed, doc_type, doc_sealed, doc_hash, masked, phone_sealed, round,"
    " site, sampled_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_STATE = (
    "INSERT INTO {ks}.corrections_by_state (state, submitted_at, correction_id,"
    " masked, source, site) VALUES (?,?,?,?,?,?)"
)
_DELETE_STATE = (
    "DELETE FROM {ks}.corrections_by_state"
    " WHERE state = ? AND submitted_at = ? AND correction_id = ?"
)
_LIST_STATE = (
    "SELECT submitted_at, correction_id, masked, source, site"
    " FROM {ks}.corrections_by_state WHERE state = ? LIMIT ?"
)
_SELECT = "SELECT * FROM {ks}.corrections WHERE correction_id = ?"
_INSERT_EVENT = (
    "INSERT INTO {ks}.correction_events (correction_id, at, event_id, actor,"
    " action, detail) VALUES (?,?,?,?,?,?)"
)
_EVENTS = (
    "SELECT at, actor, action, detail FROM {ks}.correction_events"
    " WHERE correction_id = ?"
)
_CLAIM_MERGE = (
    "UPDATE {ks}.corrections SET state = 'MERGING', registration_id = ?,"
    " resolved_by = ? WHERE correction_id = ? IF state = 'OPEN'"
)
_FINISH = (
    "UPDATE {ks}.corrections SET state = ?, resolved_at = ?, resolved_by = ?,"
    " note = ? WHERE correction_id = ? IF state = ?"
)


class CorrectionQueue:
    """Submits, lists and resolves correction requests; audits each step.

    Store calls use the ``ingest`` profile (LOCAL_QUORUM); a failed call
    raises :class:`~engine.exceptions.StoreUnavailable` and the caller may
    repeat the same action: submissions then queue a second request (an
    operator rejects the spare), resolutions are guarded by their state.

    Args:
        store: a connected store.
        cipher: seals and opens personal fields, computes look-up hashes.
        city: known sites.
        editor: applies merges to registrations.
        clock_ms: wall clock in epoch milliseconds.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        city: City,
        editor: RegistrationEditor,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._city = city
        self._editor = editor
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._insert = store.prepare(_INSERT)
        self._insert_state = store.prepare(_INSERT_STATE)
        self._delete_state = store.prepare(_DELETE_STATE)
        self._list_state = store.prepare(_LIST_STATE)
        self._select = store.prepare(_SELECT)
        self._insert_event = store.prepare(_INSERT_EVENT)
        self._events = store.prepare(_EVENTS)
        self._claim_merge = store.prepare(_CLAIM_MERGE, idempotent=False)
        self._finish = store.prepare(_FINISH, idempotent=False)

    def check(self, request: CorrectionInput) -> CorrectionInput:
        """Return the request normalised.

        Raises:
            RequestInvalid: a field is missing or breaks its rule; ``field``
                names it.
        """
        name = check_name(request.name)
        if isinstance(name, Rejection):
            rule = "required" if not request.name.strip() else "format"
            raise RequestInvalid(name.message, field="name", rule=rule)
        today = dt.datetime.fromtimestamp(self._clock_ms() / 1000, dt.UTC).date()
        doc_type, number = parse_document(request.doc_type, request.number, today)
        phone = normalize_phone(request.phone)
        if not 0 <= request.round <= MAX_ROUND:
            raise RequestInvalid(
                f"round must be 0 (unknown) or 1..{MAX_ROUND}",
                field="round",
                rule="range",
            )
        if request.site and request.site not in self._city.sites:
            raise RequestInvalid(
                "site_id is not a known site", field="site_id", rule="unknown"
            )
        if request.sampled_at_ms < 0 or request.sampled_at_ms > self._clock_ms():
            raise RequestInvalid(
                "sampled_at_ms must be 0 (unknown) or a past instant",
                field="sampled_at_ms",
                rule="range",
            )
        return CorrectionInput(
            name=name,
            doc_type=doc_type,
            number=number,
            phone=phone,
            round=request.round,
            site=request.site,
            sampled_at_ms=request.sampled_at_ms,
        )

    async def submit(self, actor: Actor, request: CorrectionInput) -> tuple[str, int]:
        """Check and queue a request; return its id and submission time.

        Raises:
            RequestInvalid: see :meth:`check`.
            StoreUnavailable: not queued; submit again.
        """
        checked = self.check(request)
        # TODO: a client that resubmits after a timeout queues a second
        # request; operators reject the spare. A client-made request id
        # would make resubmission idempotent, as registration ids do.
        cid = uuid.uuid4()
        key = cid.bytes
        now_ms = self._clock_ms()
        source = f"{actor.kind}:{actor.id}"
        masked = mask_document(checked.number)

        await asyncio.gather(
            self._store.execute(
                self._insert,
                (
                    cid,
                    CorrectionState.OPEN.value,
                    now_ms,
                    source,
                    self._cipher.seal(checked.name, key),
                    checked.doc_type,
                    self._cipher.seal(checked.number, key),
                    self._cipher.lookup_hash(checked.doc_type, checked.number),
                    masked,
                    self._cipher.seal(checked.phone, key),
                    checked.round,
                    checked.site,
                    checked.sampled_at_ms or None,
                ),
                profile="ingest",
            ),
            self._store.execute(
                self._insert_state,
                (CorrectionState.OPEN.value, now_ms, cid, masked, source, checked.site),
                profile="ingest",
            ),
            self.record(str(cid), source, "submitted", f"number {masked}"),
        )
        log.info("correction_submitted", correction=str(cid), source=source)
        return str(cid), now_ms

    async def queue(
        self, state: CorrectionState = CorrectionState.OPEN, limit: int = 200
    ) -> list[CorrectionSummary]:
        """Requests in one state, oldest first."""
        rows = await self._store.execute(
            self._list_state, (state.value, limit), profile="ingest"
        )
        return [
            CorrectionSummary(
                id=str(row.correction_id),
                state=state.value,
                submitted_at_ms=epoch_ms(row.submitted_at),
                masked=row.masked,
                source=row.source,
                site=row.site or "",
            )
            for row in rows
        ]

    async def get(self, correction_id: str) -> Correction:
        """One request with its personal fields opened.

        Raises:
            CorrectionNotFound: no such id (or not a UUID).
        """
        cid = _parse_id(correction_id)
        rows = await self._store.execute(self._select, (cid,), profile="ingest")
        if not rows:
            raise CorrectionNotFound("no correction request", id=correction_id)
        return self._opened(rows[0])

    async def events(self, correction_id: str) -> list[CorrectionEvent]:
        """The request's audited steps, oldest first."""
        rows = await self._store.execute(
            self._events, (_parse_id(correction_id),), profile="ingest"
        )
        return [
            CorrectionEvent(
                at_ms=epoch_ms(row.at),
                actor=row.actor,
                action=row.action,
                detail=row.detail or "",
            )
            for row in rows
        ]

    async def record(
        self, correction_id: str, actor: str, action: str, detail: str = ""
    ) -> None:
        """Audit one step (who, when, what) of a request."""
        await self._store.execute(
            self._insert_event,
            (
                _parse_id(correction_id),
                self._clock_ms(),
                uuid.uuid4(),
                actor,
                action,
                detail,
            ),
            profile="ingest",
        )

    async def reject(self, correction_id: str, actor: Actor, note: str) -> None:
        """Close an open request as rejected; ``note`` says why."""
        await self._close(correction_id, actor, CorrectionState.REJECTED, note)

    async def mark_not_sampled(
        self, correction_id: str, actor: Actor, note: str
    ) -> None:
        """Close an open request: the person was not sampled and must be."""
        await self._close(correction_id, actor, CorrectionState.NOT_SAMPLED, note)

    async def merge(
        self, correction_id: str, actor: Actor, registration_id: str, note: str = ""
    ) -> MergeResult:
        """Give a registration the request's name and number, and close it.

        Raises:
            CorrectionNotFound: no such request.
            CorrectionConflict: already resolved, or being merged elsewhere.
            RequestInvalid: the registration id is not a UUID.
            MergeRefused: the registration does not exist.
        """
        correction = await self.get(correction_id)
        try:
            rid = uuid.UUID(registration_id)
        except ValueError:
            raise RequestInvalid(
                "registration id must be a UUID", field="registration_id", rule="uuid"
            ) from None
        who = f"{actor.kind}:{actor.id}"
        note = _check_note(note, required=False)
        await self._editor.read(rid)

        if correction.state is CorrectionState.OPEN:
            claim = await self._store.execute(
                self._claim_merge,
                (rid, who, uuid.UUID(correction.id)),
                profile="ingest",
            )
            if not claim[0][0]:
                correction = await self.get(correction_id)
        if correction.state is not CorrectionState.OPEN and not (
            correction.state is CorrectionState.MERGING
            and correction.registration_id == str(rid)
        ):
            raise CorrectionConflict(
                "request is not open for this merge",
                id=correction_id,
                state=correction.state.value,
                registration=correction.registration_id,
            )
        await self.record(correction.id, who, "merge_started", f"registration {rid}")

        result = await self._editor.apply(
            rid,
            uuid.UUID(correction.id),
            name=correction.name,
            doc_type=correction.doc_type,
            number=correction.number,
            changed_by=who,
        )
        await self._transition(
            correction, who, CorrectionState.MERGING, CorrectionState.MERGED, note
        )
        await self.record(correction.id, who, "merged", result.describe())
        log.info(
            "correction_merged",
            correction=correction.id,
            registration=str(rid),
            by=who,
            changed=",".join(result.changed),
        )
        return result

    async def _close(
        self, correction_id: str, actor: Actor, state: CorrectionState, note: str
    ) -> None:
        correction = await self.get(correction_id)
        who = f"{actor.kind}:{actor.id}"
        note = _check_note(note, required=True)
        if await self._transition(correction, who, CorrectionState.OPEN, state, note):
            await self.record(correction.id, who, state.value.lower(), note)
        log.info("correction_closed", correction=correction.id, state=state, by=who)

    async def _transition(
        self,
        correction: Correction,
        who: str,
        expected: CorrectionState,
        state: CorrectionState,
        note: str,
    ) -> bool:
        """Move the request to ``state``; False if this was a repeat by ``who``.

        Raises:
            CorrectionConflict: someone else resolved it, or another way.
        """
        cid = uuid.UUID(correction.id)
        now_ms = self._clock_ms()
        applied = await self._store.execute(
            self._finish,
            (state.value, now_ms, who, note, cid, expected.value),
            profile="ingest",
        )
        if not applied[0][0]:
            current = await self.get(correction.id)
            if current.state is not state or current.resolved_by != who:
                raise CorrectionConflict(
                    "request is already resolved",
                    id=correction.id,
                    state=current.state.value,
                    by=current.resolved_by,
                    wanted=state.value,
                )
            return False
        # The queue rows move after the row itself: a crash here leaves the
        # request listed as OPEN with a resolved row, which a retry of the
        # same resolution (refused as a conflict) does not repair.
        # TODO: reconcile corrections_by_state with corrections (a sweep that
        # re-files rows whose state differs) so an interrupted resolution does
        # not stay listed as open.
        await asyncio.gather(
            self._store.execute(
                self._delete_state,
                (CorrectionState.OPEN.value, correction.submitted_at_ms, cid),
                profile="ingest",
            ),
            self._store.execute(
                self._insert_state,
                (
                    state.value,
                    correction.submitted_at_ms,
                    cid,
                    correction.masked,
                    correction.source,
                    correction.site,
                ),
                profile="ingest",
            ),
        )
        return True

    def _opened(self, row: Any) -> Correction:
        key = row.correction_id.bytes
        return Correction(
            id=str(row.correction_id),
            state=CorrectionState(row.state),
            submitted_at_ms=epoch_ms(row.submitted_at),
            source=row.source,
            name=self._cipher.open(row.name_sealed, key),
            doc_type=row.doc_type,
            number=self._cipher.open(row.doc_sealed, key),
            phone=self._cipher.open(row.phone_sealed, key),
            round=row.round or 0,
            site=row.site or "",
            sampled_at_ms=epoch_ms(row.sampled_at) if row.sampled_at else 0,
            resolved_at_ms=epoch_ms(row.resolved_at) if row.resolved_at else 0,
            resolved_by=row.resolved_by or "",
            registration_id=str(row.registration_id) if row.registration_id else "",
            note=row.note or "",
        )


def _parse_id(correction_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(correction_id)
    except ValueError:
        raise CorrectionNotFound("no correction request", id=correction_id) from None


def _check_note(note: str, *, required: bool) -> str:
    text = " ".join(note.split())
    if required and not text:
        raise RequestInvalid(
            "a note saying why is required", field="note", rule="required"
        )
    if len(text) > MAX_NOTE_CHARS:
        raise RequestInvalid(
            f"note has {len(text)} characters, at most {MAX_NOTE_CHARS}",
            field="note",
            rule="length",
        )
    return text
