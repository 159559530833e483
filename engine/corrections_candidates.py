"""Registrations that may be the one a correction request is about.

Names and numbers are sealed, so the store cannot be searched by them.
Instead, candidates come from three places:

* **ID edits.** Every number one substitution or adjacent transposition away
  from the request's is enumerated, and, for numbers with a check character
  (resident ID cards, new foreign permanent residence cards), every number
  two such edits away that still passes its type's rule; one edit never
  does, since the check character catches all single substitutions and
  adjacent swaps, so a misread the gateway accepted is two edits away. Each
  variant's keyed hash is read in ``registrations_by_person``, found
  registrations are opened and kept when their name is the request's. The
  request's own number is read too, for a misread name.
* **OCR flags.** Registrations whose photo the server read differently
  (``ocr_flags``, per round and district), kept when the server's read is the
  request's number or name, or the stored name is the request's.
* **Same site and time.** Registrations that arrived at the request's site
  within ``window_min`` minutes of when the resident says they were sampled
  (``registrations_by_minute``), ranked by name match and ID distance.

Operators see masked values and whether each field matches, never the
plaintext of a stranger's registration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import string
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from engine.city import City
from engine.corrections import Correction
from engine.counters import MINUTE_MS
from engine.documents import DocumentType, InvalidDocument, normalize_document
from engine.exceptions import StoreUnavailable
from engine.lookup import epoch_ms
from engine.pii import PiiCipher, mask_document, mask_name
from engine.store import CqlStore

__all__ = [
    "Candidate",
    "CandidateFinder",
    "CandidateReport",
    "edit_distance",
    "id_variants",
]

log = structlog.get_logger()

T = TypeVar("T")

READ_ATTEMPTS = 3
"""Tries per candidate read before the search gives up."""

_CHECKED_TYPES = frozenset(
    {int(DocumentType.RESIDENT_ID_CARD), int(DocumentType.FOREIGN_PERMANENT_RESIDENCE)}
)
_ALPHABETS = {
    int(DocumentType.RESIDENT_ID_CARD): string.digits,
    int(DocumentType.HK_MACAO_PASS): string.digits + "HM",
    int(DocumentType.TAIWAN_PASS): string.digits,
    int(DocumentType.PASSPORT): string.digits + string.ascii_uppercase,
    int(DocumentType.FOREIGN_PERMANENT_RESIDENCE): string.digits
    + string.ascii_uppercase,
}

_BY_PERSON = (
    "SELECT registration_id FROM {ks}.registrations_by_person"
    " WHERE doc_hash = ? LIMIT 20"
)
_MAIN = (
    "SELECT registration_id, round, tube, name_sealed, doc_type, doc_sealed,"
    " site, district, captured_at FROM {ks}.registrations WHERE registration_id = ?"
)
_FLAGS = (
    "SELECT registration_id, verdict, field, site, verified_at FROM {ks}.ocr_flags"
    " WHERE round = ? AND district = ? LIMIT ?"
)
_VERIFICATION = (
    "SELECT field, server_read_sealed FROM {ks}.ocr_verifications"
    " WHERE registration_id = ?"
)
_MINUTE = (
    "SELECT registration_id, site FROM {ks}.registrations_by_minute"
    " WHERE round = ? AND district = ? AND minute = ?"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A registration an operator may merge the request into."""

    registration_id: str
    source: str
    """``id_edit``, ``same_id``, ``ocr_flag`` or ``same_site_time``."""
    name_matches: bool
    id_edits: int
    """Edits between its number and the request's (0: the same)."""
    masked_number: str
    masked_name: str
    round: int
    site: str
    district: str
    tube: str
    captured_at_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CandidateReport:
    """Every candidate found, best first, and what the search could not do."""

    candidates: tuple[Candidate, ...]
    variants_checked: int
    notes: tuple[str, ...] = field(default_factory=tuple)


def edit_distance(a: str, b: str) -> int:
    """Substitutions, insertions, deletions and adjacent swaps between two strings."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _one_edit(number: str, alphabet: str, last_alphabet: str) -> set[str]:
    out = set()
    for i, char in enumerate(number):
        for other in last_alphabet if i == len(number) - 1 else alphabet:
            if other != char:
                out.add(number[:i] + other + number[i + 1 :])
    for i in range(len(number) - 1):
        if number[i] != number[i + 1]:
            out.add(number[:i] + number[i + 1] + number[i] + number[i + 2 :])
    return out


def id_variants(doc_type: int, number: str, today: dt.date) -> dict[str, int]:
    """Valid numbers within one or two edits of ``number``, with their distance.

    One edit for every type with a known alphabet; two edits only for types
    with a check character, where the rule keeps the count near a thousand.
    ``OTHER`` documents are free text and get none.
    """
    alphabet = _ALPHABETS.get(doc_type)
    if alphabet is None:
        return {}
    kind = DocumentType(doc_type)
    last = alphabet + "X" if doc_type in _CHECKED_TYPES else alphabet
    first = _one_edit(number, alphabet, last)
    second: set[str] = set()
    if doc_type in _CHECKED_TYPES:
        for variant in first:
            second |= _one_edit(variant, alphabet, last)

    found: dict[str, int] = {}
    for edits, variants in ((2, second), (1, first)):
        for variant in variants:
            if variant == number:
                continue
            try:
                normalize_document(kind, variant, today)
            except InvalidDocument:
                continue
            found[variant] = edits
    return found


class CandidateFinder:
    """Finds and ranks candidate registrations for one correction request.

    Reads go out at most ``concurrency`` at a time on the ``lookup`` profile;
    a resident ID request reads about a thousand variant hashes, which takes
    a second or two, so callers run it once per request view, not per key.

    Args:
        store: a connected store.
        cipher: opens names and numbers, hashes variants.
        city: districts of sites.
        concurrency: store reads in flight at once.
        window_min: minutes either side of the remembered sampling time.
        max_flags: most OCR flags examined per district.
        max_site_rows: most same-site registrations opened.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        city: City,
        *,
        concurrency: int = 32,
        window_min: int = 15,
        max_flags: int = 2_000,
        max_site_rows: int = 400,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._city = city
        self._limit = asyncio.Semaphore(concurrency)
        self._window_min = window_min
        self._max_flags = max_flags
        self._max_site_rows = max_site_rows
        self._by_person = store.prepare(_BY_PERSON)
        self._main = store.prepare(_MAIN)
        self._flags = store.prepare(_FLAGS)
        self._verification = store.prepare(_VERIFICATION)
        self._minute = store.prepare(_MINUTE)

    async def find(self, request: Correction, today: dt.date) -> CandidateReport:
        """Search all three sources and return the candidates, best first."""
        notes: list[str] = []
        variants = id_variants(request.doc_type, request.number, today)
        variants[request.number] = 0
        by_id = await self._from_variants(request, variants)
        flagged: list[Candidate] = []
        nearby: list[Candidate] = []
        if request.round:
            flagged = await self._from_flags(request)
        else:
            notes.append("no round given: OCR flags not searched")
        if request.round and request.site and request.sampled_at_ms:
            nearby = await self._from_site_time(request)
        else:
            notes.append("round, site and time not all given: same site not searched")

        best: dict[str, Candidate] = {}
        for candidate in [*by_id, *flagged, *nearby]:
            known = best.get(candidate.registration_id)
            if known is None or _rank(candidate) < _rank(known):
                best[candidate.registration_id] = candidate
        ranked = sorted(best.values(), key=_rank)
        log.info(
            "correction_candidates",
            correction=request.id,
            variants=len(variants),
            candidates=len(ranked),
        )
        return CandidateReport(
            candidates=tuple(ranked), variants_checked=len(variants), notes=tuple(notes)
        )

    async def _from_variants(
        self, request: Correction, variants: dict[str, int]
    ) -> list[Candidate]:
        numbers = list(variants)
        hits = await self._gather(
            self._read(
                self._by_person, (self._cipher.lookup_hash(request.doc_type, number),)
            )
            for number in numbers
        )
        ids = {row.registration_id for rows in hits for row in rows}
        out = []
        for row in await self._mains(ids):
            candidate = self._candidate(row, request, "id_edit")
            if candidate.id_edits == 0:
                out.append(_replace_source(candidate, "same_id"))
            elif candidate.name_matches:
                out.append(candidate)
        return out

    # TODO: at most max_flags flags per district are read, oldest rows first
    # by id order, not nearest in time; a district with more flags in a
    # round can hide the right one. Flags have no per-site or per-minute
    # index to narrow the read.
    async def _from_flags(self, request: Correction) -> list[Candidate]:
        district = self._city.district_of_site(request.site) if request.site else None
        districts = [district] if district else list(self._city.districts)
        partitions = await self._gather(
            self._read(self._flags, (request.round, code, self._max_flags))
            for code in districts
        )
        flags = [
            row
            for rows in partitions
            for row in rows
            if not request.site or row.site == request.site
        ]
        reads = await self._gather(
            self._read(self._verification, (row.registration_id,)) for row in flags
        )
        server_reads: dict[uuid.UUID, str] = {}
        for row, verification in zip(flags, reads, strict=True):
            if verification and verification[0].server_read_sealed:
                server_reads[row.registration_id] = self._cipher.open(
                    verification[0].server_read_sealed, row.registration_id.bytes
                )
        out = []
        for row in await self._mains({row.registration_id for row in flags}):
            read = server_reads.get(row.registration_id, "")
            candidate = self._candidate(row, request, "ocr_flag")
            read_matches = read in {request.number, request.name}
            if candidate.name_matches or read_matches:
                detail = "server read matches the request" if read_matches else ""
                out.append(_replace_source(candidate, "ocr_flag", detail))
        return out

    async def _from_site_time(self, request: Correction) -> list[Candidate]:
        district = self._city.district_of_site(request.site)
        centre = request.sampled_at_ms - request.sampled_at_ms % MINUTE_MS
        minutes = [
            centre + offset * MINUTE_MS
            for offset in range(-self._window_min, self._window_min + 1)
        ]
        partitions = await self._gather(
            self._read(self._minute, (request.round, district, minute))
            for minute in minutes
        )
        ids = [
            row.registration_id
            for rows in partitions
            for row in rows
            if row.site == request.site
        ][: self._max_site_rows]
        candidates = [
            self._candidate(row, request, "same_site_time")
            for row in await self._mains(set(ids))
        ]
        candidates.sort(key=_rank)
        return candidates[:20]

    async def _mains(self, ids: Iterable[uuid.UUID]) -> list[Any]:
        results = await self._gather(self._read(self._main, (rid,)) for rid in ids)
        return [rows[0] for rows in results if rows]

    def _candidate(self, row: Any, request: Correction, source: str) -> Candidate:
        key = row.registration_id.bytes
        name = self._cipher.open(row.name_sealed, key)
        number = self._cipher.open(row.doc_sealed, key)
        return Candidate(
            registration_id=str(row.registration_id),
            source=source,
            name_matches=_same_name(name, request.name),
            id_edits=edit_distance(number, request.number),
            masked_number=mask_document(number),
            masked_name=mask_name(name),
            round=row.round,
            site=row.site,
            district=row.district,
            tube=row.tube,
            captured_at_ms=epoch_ms(row.captured_at),
        )

    async def _read(self, statement: Any, params: tuple[Any, ...]) -> list[Any]:
        # Operator searches send hundreds of reads on a store busy with
        # ingest; a read that times out is retried rather than failing the
        # whole search.
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return await self._store.execute(statement, params, profile="lookup")
            except StoreUnavailable:
                if attempt == READ_ATTEMPTS:
                    raise
                log.warning("candidate_read_retry", attempt=attempt)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _gather(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        async def limited(call: Awaitable[T]) -> T:
            async with self._limit:
                return await call

        return await asyncio.gather(*(limited(call) for call in calls))


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _rank(candidate: Candidate) -> tuple[int, int, int]:
    order = {"id_edit": 0, "same_id": 0, "ocr_flag": 1, "same_site_time": 2}
    return (
        0 if candidate.name_matches else 1,
        candidate.id_edits,
        order.get(candidate.source, 3),
    )


def _replace_source(candidate: Candidate, source: str, detail: str = "") -> Candidate:
    return dataclasses.replace(
        candidate, source=source, detail=detail or candidate.detail
    )
