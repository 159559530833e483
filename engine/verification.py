"""OCR verification of stored registrations: queue, verdicts, and the sweep.

Acks never wait for OCR. A registration's photo and an ``ocr_pending`` row are
written with its index rows, before the main row, so every stored registration
with a photo has its verification recorded as pending. The shard then hands
the photo to the OCR actors; the verdict is written and the pending row
removed. Whatever is still pending after a crash, a full queue or an OCR
outage is picked up by the periodic sweep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from engine.documents import DocumentType
from engine.exceptions import IngestError, StoreUnavailable
from engine.ocr_verdict import OcrResult, Verdict, VerifyRequest
from engine.pii import PiiCipher
from engine.registration import Registration
from engine.store import CqlStore

__all__ = ["OcrService", "OcrVerifier", "PendingVerification", "needs_verification"]

log = structlog.get_logger()

SWEEP_PAGE = 200
"""Pending rows one sweep takes per shard; the rest wait for the next."""


class OcrService(Protocol):
    """What the verifier needs from the OCR actors."""

    async def verify(self, request: VerifyRequest) -> OcrResult:
        """Judge one photo against the values the device sent."""
        ...  # pragma: no cover


@dataclass(frozen=True, slots=True)
class PendingVerification:
    """A stored photo waiting for its verdict, with what the device sent."""

    shard: str
    registration_id: bytes
    image: bytes
    name: str
    id_number: str
    round: int
    district: str
    site: str


# TODO: photos of passports and permits are stored but never verified: the
# reader knows only the resident ID card's layout, so misreads of those
# documents surface only when the resident complains.
def needs_verification(record: Registration) -> bool:
    """Only resident ID cards have a layout the OCR reader knows."""
    return bool(record.image) and record.doc_type == DocumentType.RESIDENT_ID_CARD


class OcrVerifier:
    """Sends stored photos to OCR and records the verdicts.

    Algorithm: :meth:`submit` starts one task per photo, at most
    ``max_concurrent`` calling OCR at once; past ``max_queued`` tasks it takes
    no more and leaves the rest pending in the store. A task records the
    verdict (and, unless MATCH, a flag for the correction queue), then deletes
    the pending row. An OCR timeout, a full OCR pool or a store error leaves the
    row pending; :meth:`sweep` re-reads pending rows of a shard from the store
    and submits them again. Verdicts are upserts keyed by registration id, so a
    photo verified twice (a sweep racing a slow task) is recorded once.

    Args:
        store: connected store.
        cipher: opens stored fields, seals the server's read.
        ocr: the OCR actors.
        max_concurrent: OCR calls in flight.
        max_queued: verification tasks held in memory.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        ocr: OcrService,
        *,
        max_concurrent: int = 32,
        max_queued: int = 2_000,
    ) -> None:
        self.num_verified = 0
        self.num_deferred = 0
        self.num_failed = 0
        self._store = store
        self._cipher = cipher
        self._ocr = ocr
        self._limit = asyncio.Semaphore(max_concurrent)
        self._max_queued = max_queued
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._insert_verdict = store.prepare(
            "INSERT INTO {ks}.ocr_verifications (registration_id, verdict, field,"
            " server_read_sealed, confidence, reason, round, district, site,"
            " verified_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
        )
        self._insert_flag = store.prepare(
            "INSERT INTO {ks}.ocr_flags (round, district, registration_id, verdict,"
            " field, confidence, site, verified_at) VALUES (?,?,?,?,?,?,?,?)"
        )
        self._delete_pending = store.prepare(
            "DELETE FROM {ks}.ocr_pending WHERE shard = ? AND registration_id = ?"
        )
        self._select_pending = store.prepare(
            "SELECT registration_id FROM {ks}.ocr_pending WHERE shard = ? LIMIT ?"
        )
        self._select_image = store.prepare(
            "SELECT image_sealed FROM {ks}.id_card_images WHERE registration_id = ?"
        )
        self._select_main = store.prepare(
            "SELECT name_sealed, doc_sealed, round, district, site"
            " FROM {ks}.registrations WHERE registration_id = ?"
        )

    @property
    def curr_queued(self) -> int:
        """Verification tasks in memory now."""
        return len(self._tasks)

    def submit(self, shard: str, records: Sequence[Registration]) -> int:
        """Start verifying freshly stored registrations; returns how many.

        Registrations past the queue cap stay pending for the sweep.
        """
        started = 0
        for record in records:
            if not needs_verification(record):
                continue
            started += self._start(
                PendingVerification(
                    shard=shard,
                    registration_id=record.registration_id,
                    image=record.image,
                    name=record.name,
                    id_number=record.doc_number,
                    round=record.round,
                    district=record.district,
                    site=record.site,
                )
            )
        return started

    async def sweep(self, shard: str) -> int:
        """Submit the shard's pending verifications again; returns how many."""
        rows = await self._store.execute(
            self._select_pending, (shard, SWEEP_PAGE), profile="lookup"
        )
        started = 0
        for row in rows:
            key = row.registration_id.bytes
            if key in self._tasks:
                continue
            pending = await self._load(shard, row.registration_id)
            if pending is not None:
                started += self._start(pending)
        if started:
            log.info("ocr_sweep", shard=shard, resubmitted=started)
        return started

    async def drain(self) -> None:
        """Wait for every verification task in memory."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _start(self, pending: PendingVerification) -> int:
        if pending.registration_id in self._tasks:
            return 0
        if len(self._tasks) >= self._max_queued:
            self.num_deferred += 1
            return 0
        task = asyncio.get_running_loop().create_task(self._verify(pending))
        self._tasks[pending.registration_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(pending.registration_id, None))
        return 1

    async def _load(self, shard: str, registration_id: uuid.UUID) -> Any:
        images = await self._store.execute(
            self._select_image, (registration_id,), profile="lookup"
        )
        mains = await self._store.execute(
            self._select_main, (registration_id,), profile="lookup"
        )
        if not images or not mains:
            # The main row is written after the pending row: its batch is
            # still in flight, or failed and will be rewritten whole.
            return None
        key = registration_id.bytes
        main = mains[0]
        return PendingVerification(
            shard=shard,
            registration_id=key,
            image=self._cipher.open_bytes(images[0].image_sealed, key),
            name=self._cipher.open(main.name_sealed, key),
            id_number=self._cipher.open(main.doc_sealed, key),
            round=main.round,
            district=main.district,
            site=main.site,
        )

    async def _verify(self, pending: PendingVerification) -> None:
        request = VerifyRequest(
            request_id=str(uuid.UUID(bytes=pending.registration_id)),
            image=pending.image,
            name=pending.name,
            id_number=pending.id_number,
        )
        try:
            async with self._limit:
                result = await self._ocr.verify(request)
            await self._record(pending, result)
        except (IngestError, StoreUnavailable) as exc:
            self.num_failed += 1
            log.warning(
                "ocr_verify_deferred",
                shard=pending.shard,
                error=type(exc).__name__,
                next="left pending for the sweep",
            )
            return
        self.num_verified += 1

    async def _record(self, pending: PendingVerification, result: OcrResult) -> None:
        rid = uuid.UUID(bytes=pending.registration_id)
        now_ms = time.time_ns() // 1_000_000
        sealed = (
            self._cipher.seal(result.server_read, pending.registration_id)
            if result.server_read
            else None
        )
        verdict = result.verdict.name
        await self._store.execute(
            self._insert_verdict,
            (
                rid,
                verdict,
                result.field,
                sealed,
                result.confidence,
                result.reason,
                pending.round,
                pending.district,
                pending.site,
                now_ms,
            ),
            profile="ingest",
        )
        if result.verdict is not Verdict.MATCH:
            await self._store.execute(
                self._insert_flag,
                (
                    pending.round,
                    pending.district,
                    rid,
                    verdict,
                    result.field,
                    result.confidence,
                    pending.site,
                    now_ms,
                ),
                profile="ingest",
            )
        await self._store.execute(
            self._delete_pending, (pending.shard, rid), profile="ingest"
        )
        log.debug("ocr_verified", shard=pending.shard, verdict=verdict)
