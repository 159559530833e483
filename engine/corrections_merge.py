"""Fixing a stored registration's name or document number from a correction.

A registration's personal fields are sealed bound to its id, and its index
rows are keyed by the keyed hash of its number, so a fix is more than one
update: re-seal, write index rows under the new hash, rewrite the main row,
delete the index rows under the old hash, and keep the previous values.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from engine.exceptions import IngestError
from engine.pii import PiiCipher, mask_document
from engine.registration_rows import INSERT_PERSON, INSERT_ROUND, ROUND_BUCKETS
from engine.store import CqlStore

__all__ = ["DocumentChange", "MergeRefused", "MergeResult", "RegistrationEditor"]

log = structlog.get_logger()

_SELECT_MAIN = (
    "SELECT registration_id, round, tube, name_sealed, doc_type, doc_sealed,"
    " doc_hash, site, district, captured_at, received_at"
    " FROM {ks}.registrations WHERE registration_id = ?"
)
_SELECT_HISTORY = (
    "SELECT name_sealed, doc_type, doc_sealed, doc_hash FROM"
    " {ks}.registration_history WHERE registration_id = ? AND correction_id = ?"
)
_INSERT_HISTORY = (
    "INSERT INTO {ks}.registration_history (registration_id, correction_id,"
    " changed_at, changed_by, name_sealed, doc_type, doc_sealed, doc_hash,"
    " new_doc_hash) VALUES (?,?,toTimestamp(now()),?,?,?,?,?,?)"
)
_LIST_HISTORY = (
    "SELECT correction_id, changed_at, changed_by, name_sealed, doc_type,"
    " doc_sealed, doc_hash, new_doc_hash"
    " FROM {ks}.registration_history WHERE registration_id = ?"
)
_DELETE_PERSON = (
    "DELETE FROM {ks}.registrations_by_person"
    " WHERE doc_hash = ? AND received_at = ? AND registration_id = ?"
)
_DELETE_ROUND = (
    "DELETE FROM {ks}.registrations_by_round_district WHERE round = ? AND"
    " district = ? AND bucket = ? AND doc_hash = ? AND registration_id = ?"
)
_UPDATE_TUBE = (
    "UPDATE {ks}.registrations_by_tube SET doc_hash = ?"
    " WHERE tube = ? AND registration_id = ?"
)
_UPDATE_MAIN = (
    "UPDATE {ks}.registrations SET name_sealed = ?, doc_type = ?, doc_sealed = ?,"
    " doc_hash = ? WHERE registration_id = ?"
)


class MergeRefused(IngestError):
    """The registration to merge into does not exist."""


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """A registration whose document number (and so look-up hash) changed."""

    registration_id: uuid.UUID
    round: int
    district: str
    old_doc_hash: bytes
    new_doc_hash: bytes


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge changed."""

    registration_id: str
    changed: tuple[str, ...]
    """``name`` and/or ``document``; empty if the registration already held
    the request's values."""
    old_masked: str
    new_masked: str

    def describe(self) -> str:
        """One line for the audit trail (masked values only)."""
        if not self.changed:
            return f"registration {self.registration_id} already held these values"
        parts = [f"registration {self.registration_id}: {'+'.join(self.changed)}"]
        if "document" in self.changed:
            parts.append(f"number {self.old_masked} -> {self.new_masked}")
        return "; ".join(parts)


class RegistrationEditor:
    """Applies a correction's name and number to one registration.

    Order, each step an idempotent write: (1) keep the previous values in
    ``registration_history`` under (registration, correction), unless a
    row is there already, which means an earlier try got this far and its
    values are the true previous ones; (2) write the person and round index
    rows under the new hash and point the tube row at it; (3) rewrite the main
    row; (4) delete the index rows under the old hash. A crash anywhere is
    repaired by applying the same correction again. Shards never rewrite a
    stored registration (a resend is a DUPLICATE), so no ingest write races
    with this one.

    Args:
        store: a connected store.
        cipher: seals, opens and hashes personal fields.
        on_document_changed: called after a number changed, for whatever
            keeps per-person state keyed by the hash.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        *,
        on_document_changed: Callable[[DocumentChange], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        # TODO: round participation (the population registry's per-round
        # bitmaps, keyed by document hash) is not moved when a merge changes
        # a number: nothing subscribes to on_document_changed yet, so the
        # person stays counted under the misread number until it does.
        self._on_document_changed = on_document_changed
        self._select_main = store.prepare(_SELECT_MAIN)
        self._select_history = store.prepare(_SELECT_HISTORY)
        self._insert_history = store.prepare(_INSERT_HISTORY)
        self._list_history = store.prepare(_LIST_HISTORY)
        self._insert_person = store.prepare(INSERT_PERSON)
        self._delete_person = store.prepare(_DELETE_PERSON)
        self._insert_round = store.prepare(INSERT_ROUND)
        self._delete_round = store.prepare(_DELETE_ROUND)
        self._update_tube = store.prepare(_UPDATE_TUBE)
        self._update_main = store.prepare(_UPDATE_MAIN)

    async def read(self, registration_id: uuid.UUID) -> Any:
        """The registration's main row.

        Raises:
            MergeRefused: there is none.
        """
        rows = await self._store.execute(
            self._select_main, (registration_id,), profile="ingest"
        )
        if not rows:
            raise MergeRefused(
                "no such registration", registration=str(registration_id)
            )
        return rows[0]

    async def history(self, registration_id: uuid.UUID) -> list[Any]:
        """Rows of previous values, one per correction applied."""
        return await self._store.execute(
            self._list_history, (registration_id,), profile="ingest"
        )

    def open_history(self, registration_id: uuid.UUID, row: Any) -> tuple[str, str]:
        """The previous name and number kept in a history row."""
        key = registration_id.bytes + row.correction_id.bytes
        return (
            self._cipher.open(row.name_sealed, key),
            self._cipher.open(row.doc_sealed, key),
        )

    async def apply(
        self,
        registration_id: uuid.UUID,
        correction_id: uuid.UUID,
        *,
        name: str,
        doc_type: int,
        number: str,
        changed_by: str,
    ) -> MergeResult:
        """Give the registration ``name`` and ``number`` (already validated)."""
        main = await self.read(registration_id)
        rid = registration_id.bytes
        old_name = self._cipher.open(main.name_sealed, rid)
        old_number = self._cipher.open(main.doc_sealed, rid)
        old_type, old_hash = main.doc_type, main.doc_hash

        kept = await self._store.execute(
            self._select_history, (registration_id, correction_id), profile="ingest"
        )
        if kept:
            history_key = rid + correction_id.bytes
            old_name = self._cipher.open(kept[0].name_sealed, history_key)
            old_number = self._cipher.open(kept[0].doc_sealed, history_key)
            old_type, old_hash = kept[0].doc_type, kept[0].doc_hash
        new_hash = self._cipher.lookup_hash(doc_type, number)
        changed = tuple(
            label
            for label, differs in (
                ("name", old_name != name),
                ("document", old_hash != new_hash),
            )
            if differs
        )
        result = MergeResult(
            registration_id=str(registration_id),
            changed=changed,
            old_masked=mask_document(old_number),
            new_masked=mask_document(number),
        )
        if not changed:
            return result

        if not kept:
            history_key = rid + correction_id.bytes
            await self._store.execute(
                self._insert_history,
                (
                    registration_id,
                    correction_id,
                    changed_by,
                    self._cipher.seal(old_name, history_key),
                    old_type,
                    self._cipher.seal(old_number, history_key),
                    old_hash,
                    new_hash,
                ),
                profile="ingest",
            )
        await self._write_index(main, new_hash)
        await self._store.execute(
            self._update_main,
            (
                self._cipher.seal(name, rid),
                doc_type,
                self._cipher.seal(number, rid),
                new_hash,
                registration_id,
            ),
            profile="ingest",
        )
        if old_hash != new_hash:
            await self._delete_index(main, old_hash)
            if self._on_document_changed is not None:
                await self._on_document_changed(
                    DocumentChange(
                        registration_id=registration_id,
                        round=main.round,
                        district=main.district,
                        old_doc_hash=old_hash,
                        new_doc_hash=new_hash,
                    )
                )
        log.info(
            "registration_corrected",
            registration=str(registration_id),
            changed=",".join(changed),
        )
        return result

    async def _write_index(self, main: Any, new_hash: bytes) -> None:
        rid = main.registration_id
        await asyncio.gather(
            self._store.execute(
                self._insert_person,
                (
                    new_hash,
                    main.received_at,
                    rid,
                    main.round,
                    main.tube,
                    main.site,
                    main.district,
                    main.captured_at,
                ),
                profile="ingest",
            ),
            self._store.execute(
                self._insert_round,
                (
                    main.round,
                    main.district,
                    new_hash[0] % ROUND_BUCKETS,
                    new_hash,
                    rid,
                    main.site,
                    main.tube,
                    main.captured_at,
                ),
                profile="ingest",
            ),
            self._store.execute(
                self._update_tube, (new_hash, main.tube, rid), profile="ingest"
            ),
        )

    async def _delete_index(self, main: Any, old_hash: bytes) -> None:
        rid = main.registration_id
        await asyncio.gather(
            self._store.execute(
                self._delete_person,
                (old_hash, main.received_at, rid),
                profile="ingest",
            ),
            self._store.execute(
                self._delete_round,
                (
                    main.round,
                    main.district,
                    old_hash[0] % ROUND_BUCKETS,
                    old_hash,
                    rid,
                ),
                profile="ingest",
            ),
        )
