"""The rows a registration is stored as: sealed fields, index rows, main row.

Prepared once per process; the shard writer decides what to write and when,
this module only how each row looks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cassandra.query import BoundStatement

from engine.counters import minute_of
from engine.pii import PiiCipher
from engine.registration import Registration
from engine.store import CqlStore
from engine.verification import needs_verification

__all__ = [
    "INSERT_MAIN",
    "INSERT_MINUTE",
    "INSERT_PERSON",
    "INSERT_ROUND",
    "INSERT_TUBE",
    "ROUND_BUCKETS",
    "RegistrationRows",
    "SealedFields",
]

ROUND_BUCKETS = 32
"""Partitions per (round, district) listing; see the 0001 migration."""

SealedFields = tuple[uuid.UUID, bytes, bytes, bytes]
"""(registration id, sealed name, sealed number, look-up hash)."""

INSERT_MAIN = (
    "INSERT INTO {ks}.registrations (registration_id, attempt, round, tube,"
    " name_sealed, doc_type, doc_sealed, doc_hash, site, district, device,"
    " collector, captured_at, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_PERSON = (
    "INSERT INTO {ks}.registrations_by_person (doc_hash, received_at,"
    " registration_id, round, tube, site, district, captured_at)"
    " VALUES (?,?,?,?,?,?,?,?)"
)
INSERT_TUBE = (
    "INSERT INTO {ks}.registrations_by_tube (tube, registration_id, round,"
    " doc_hash, site, district, captured_at) VALUES (?,?,?,?,?,?,?)"
)
INSERT_ROUND = (
    "INSERT INTO {ks}.registrations_by_round_district (round, district, bucket,"
    " doc_hash, registration_id, site, tube, captured_at) VALUES (?,?,?,?,?,?,?,?)"
)
INSERT_IMAGE = (
    "INSERT INTO {ks}.id_card_images (registration_id, image_sealed) VALUES (?,?)"
)
INSERT_PENDING = "INSERT INTO {ks}.ocr_pending (shard, registration_id) VALUES (?,?)"
INSERT_MINUTE = (
    "INSERT INTO {ks}.registrations_by_minute (round, district, minute,"
    " registration_id, site, device) VALUES (?,?,?,?,?,?)"
)
INSERT_ROUND_MINUTE = (
    "INSERT INTO {ks}.round_minutes (round, minute, district) VALUES (?,?,?)"
)


class RegistrationRows:
    """Binds the rows of registrations to the store's prepared statements.

    Args:
        store: connected store.
        cipher: seals name, number and photo.
    """

    def __init__(self, store: CqlStore, cipher: PiiCipher) -> None:
        self._cipher = cipher
        self._main = store.prepare(INSERT_MAIN)
        self._person = store.prepare(INSERT_PERSON)
        self._tube = store.prepare(INSERT_TUBE)
        self._round = store.prepare(INSERT_ROUND)
        self._minute = store.prepare(INSERT_MINUTE)
        self._round_minute = store.prepare(INSERT_ROUND_MINUTE)
        self._image = store.prepare(INSERT_IMAGE)
        self._pending = store.prepare(INSERT_PENDING)

    def seal(self, record: Registration) -> SealedFields:
        """The id as a UUID, the sealed name and number, and the look-up hash."""
        rid = record.registration_id
        return (
            uuid.UUID(bytes=rid),
            self._cipher.seal(record.name, rid),
            self._cipher.seal(record.doc_number, rid),
            self._cipher.lookup_hash(record.doc_type, record.doc_number),
        )

    def index(
        self,
        records: Sequence[Registration],
        sealed: Sequence[SealedFields],
        shards: Sequence[str],
    ) -> list[BoundStatement]:
        """Every index row of the registrations (all but the main row).

        ``shards`` names each registration's logical shard, for the rows of
        photos still to be verified.
        """
        statements = []
        for record, (rid, _, _, doc_hash), shard in zip(
            records, sealed, shards, strict=True
        ):
            statements.append(
                self._person.bind(
                    (
                        doc_hash,
                        record.received_at_ms,
                        rid,
                        record.round,
                        record.tube,
                        record.site,
                        record.district,
                        record.captured_at_ms,
                    )
                )
            )
            statements.append(
                self._tube.bind(
                    (
                        record.tube,
                        rid,
                        record.round,
                        doc_hash,
                        record.site,
                        record.district,
                        record.captured_at_ms,
                    )
                )
            )
            statements.append(
                self._round.bind(
                    (
                        record.round,
                        record.district,
                        doc_hash[0] % ROUND_BUCKETS,
                        doc_hash,
                        rid,
                        record.site,
                        record.tube,
                        record.captured_at_ms,
                    )
                )
            )
            statements.append(
                self._minute.bind(
                    (
                        record.round,
                        record.district,
                        minute_of(record.received_at_ms),
                        rid,
                        record.site,
                        record.device,
                    )
                )
            )
            if needs_verification(record):
                statements.append(self._pending.bind((shard, rid)))
        # One row per (round, minute, district) of the batch, for the console.
        minutes = {(r.round, minute_of(r.received_at_ms), r.district) for r in records}
        statements.extend(self._round_minute.bind(key) for key in sorted(minutes))
        return statements

    def main(
        self, records: Sequence[Registration], sealed: Sequence[SealedFields]
    ) -> list[BoundStatement]:
        """The main rows, to be written after every index row."""
        return [
            self._main.bind(
                (
                    rid,
                    uuid.UUID(bytes=record.attempt),
                    record.round,
                    record.tube,
                    name_sealed,
                    record.doc_type,
                    doc_sealed,
                    doc_hash,
                    record.site,
                    record.district,
                    record.device,
                    record.collector,
                    record.captured_at_ms,
                    record.received_at_ms,
                )
            )
            for record, (rid, name_sealed, doc_sealed, doc_hash) in zip(
                records, sealed, strict=True
            )
        ]

    def images(self, records: Sequence[Registration]) -> list[BoundStatement]:
        """The sealed photos of the registrations that carry one."""
        return [
            self._image.bind(
                (
                    uuid.UUID(bytes=record.registration_id),
                    self._cipher.seal_bytes(record.image, record.registration_id),
                )
            )
            for record in records
            if record.image
        ]
