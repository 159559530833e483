"""A person's recent sampling records by document number, every look-up audited.

The number is checked by its type's rule, hashed with the deployment's
look-up key (as the shards do when they write) and ``registrations_by_person``
is read by that hash. Answers hold where and when the person was sampled and
into which tube, never a test result. A number never sampled gets the same
shape of answer with no records, so a look-up tells nothing more about it.

Each look-up writes an audit row per person and per actor (who, which hash,
the masked number, when) concurrently with the read; the answer is given only
once the audit rows are written, so no look-up goes unaudited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from engine.city import City
from engine.documents import DocumentType, InvalidDocument, normalize_document
from engine.exceptions import IngestError
from engine.pii import PiiCipher, mask_document
from engine.store import CqlStore

__all__ = [
    "Actor",
    "LookupAnswer",
    "RequestInvalid",
    "ResidentLookup",
    "SamplingRecord",
    "epoch_ms",
    "parse_document",
]

log = structlog.get_logger()

_BY_PERSON = (
    "SELECT received_at, registration_id, round, tube, site, district, captured_at"
    " FROM {ks}.registrations_by_person WHERE doc_hash = ? LIMIT ?"
)
_AUDIT_PERSON = (
    "INSERT INTO {ks}.lookup_audit_by_person (doc_hash, at, audit_id, actor_kind,"
    " actor, doc_type, masked) VALUES (?,?,?,?,?,?,?)"
)
_AUDIT_ACTOR = (
    "INSERT INTO {ks}.lookup_audit_by_actor (actor, day, at, audit_id, actor_kind,"
    " doc_hash, doc_type, masked) VALUES (?,?,?,?,?,?,?,?)"
)


class RequestInvalid(IngestError):
    """A resident request breaks a rule; ``field`` and ``rule`` say which."""

    def __init__(self, message: str, *, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(message, field=field, rule=rule)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a look-up client (``client``) or a console user (``operator``)."""

    kind: str
    id: str


@dataclass(frozen=True, slots=True)
class SamplingRecord:
    """One sampling of a person, as residents and operators may see it."""

    round: int
    captured_at_ms: int
    site: str
    site_name: str
    district: str
    tube: str
    registration_id: str


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """What one look-up returns; ``found`` is false exactly when no records."""

    found: bool
    masked: str
    records: tuple[SamplingRecord, ...] = ()


def epoch_ms(value: dt.datetime) -> int:
    """Epoch milliseconds of a store timestamp (the driver returns naive UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def parse_document(doc_type: int, raw: str, today: dt.date) -> tuple[int, str]:
    """Check a document type and number; return them normalised.

    Raises:
        RequestInvalid: unknown type, or a number breaking its type's rule.
            The message names the rule, never the number.
    """
    try:
        kind = DocumentType(doc_type)
    except ValueError:
        raise RequestInvalid(
            "document_type must be one of "
            + ", ".join(member.name for member in DocumentType),
            field="document_type",
            rule="enum",
        ) from None
    if not raw.strip():
        raise RequestInvalid(
            "document_number is empty", field="document_number", rule="required"
        )
    try:
        number = normalize_document(kind, raw, today)
    except InvalidDocument as exc:
        raise RequestInvalid(
            f"{kind.name} number: {exc.detail}",
            field="document_number",
            rule=exc.rule,
        ) from None
    return int(kind), number


class ResidentLookup:
    """Answers look-ups by document number and audits each one.

    Reads use the store's ``lookup`` profile (LOCAL_ONE, short timeout), audit
    writes the ``ingest`` one (LOCAL_QUORUM). A store failure raises
    :class:`~engine.exceptions.StoreUnavailable` and nothing is answered; the
    caller may retry at once, since an audit row written twice is two rows
    keyed by their own ids and harms nothing.

    Args:
        store: a connected store (statements are prepared here, blocking).
        cipher: computes the look-up hash.
        city: gives site names.
        max_records: most records returned, newest first.
        clock_ms: wall clock in epoch milliseconds.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        city: City,
        *,
        max_records: int = 20,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.num_lookups = 0
        self.num_found = 0
        self._store = store
        self._cipher = cipher
        self._city = city
        self._max_records = max_records
        self._clock_ms = clock_ms or _now_ms
        self._by_person = store.prepare(_BY_PERSON)
        self._audit_person = store.prepare(_AUDIT_PERSON)
        self._audit_actor = store.prepare(_AUDIT_ACTOR)

    async def lookup(
        self, actor: Actor, doc_type: int, raw_number: str
    ) -> LookupAnswer:
        """Find a person's recent sampling records.

        Raises:
            RequestInvalid: the type or number is malformed (nothing audited:
                no person was looked up).
            StoreUnavailable: the read or the audit write failed.
        """
        now_ms = self._clock_ms()
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
        kind, number = parse_document(doc_type, raw_number, today)
        digest = self._cipher.lookup_hash(kind, number)
        masked = mask_document(number)

        rows, _ = await asyncio.gather(
            self._store.execute(
                self._by_person, (digest, self._max_records), profile="lookup"
            ),
            self.audit(actor, kind, digest, masked, now_ms),
        )
        records = tuple(self._record(row) for row in rows)

        self.num_lookups += 1
        self.num_found += bool(records)
        log.debug(
            "lookup_answered", actor=actor.id, kind=actor.kind, records=len(records)
        )
        return LookupAnswer(found=bool(records), masked=masked, records=records)

    async def audit(
        self, actor: Actor, doc_type: int, digest: bytes, masked: str, at_ms: int
    ) -> None:
        """Record that ``actor`` looked up the person behind ``digest``."""
        audit_id = uuid.uuid4()
        day = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).date()
        await asyncio.gather(
            self._store.execute(
                self._audit_person,
                (digest, at_ms, audit_id, actor.kind, actor.id, doc_type, masked),
                profile="ingest",
            ),
            self._store.execute(
                self._audit_actor,
                (actor.id, day, at_ms, audit_id, actor.kind, digest, doc_type, masked),
                profile="ingest",
            ),
        )

    def _record(self, row: Any) -> SamplingRecord:
        entry = self._city.sites.get(row.site)
        return SamplingRecord(
            round=row.round,
            captured_at_ms=epoch_ms(row.captured_at or row.received_at),
            site=row.site,
            site_name=entry.name if entry is not None else "",
            district=row.district,
            tube=row.tube,
            registration_id=str(row.registration_id),
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
