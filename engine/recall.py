"""Recall: everyone sampled into a positive pooled tube, with their contacts.

A tube's members come from ``registrations_by_tube``; their names and
document numbers are opened from the main ``registrations`` rows (sealed
under the registration id) and joined, by ID number, with the population
registry's phone and address (:class:`~engine.registry.PopulationRegistry`).
A person whose number is not on the registry (or who showed another kind of
document) is still listed, with empty contact fields, so nobody bound to a
positive tube is dropped. Exports are one CSV per district, readable by
their owner only.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import uuid
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import structlog

from engine.barcodes import BarcodeError, parse_tube_code
from engine.documents import DocumentType
from engine.exceptions import IngestError
from engine.pii import PiiCipher
from engine.registry import PopulationRegistry
from engine.store import CqlStore

__all__ = ["Recall", "RecallError", "RecalledPerson", "write_recall_csv"]

log = structlog.get_logger()

READ_CHUNK = 100
"""Registration ids per ``IN`` query."""

_LATEST_RESULT = "SELECT result FROM {ks}.tube_results WHERE tube = ? LIMIT 1"
_MEMBERS = "SELECT registration_id FROM {ks}.registrations_by_tube WHERE tube = ?"
_MAIN = (
    "SELECT registration_id, round, tube, name_sealed, doc_type, doc_sealed,"
    " site, district, collector, captured_at FROM {ks}.registrations"
    " WHERE registration_id IN ?"
)
_POSITIVE = "SELECT tube FROM {ks}.positive_tubes WHERE round = %s AND district = %s"


class RecallError(IngestError):
    """A recall that cannot be made as asked (a bad or non-positive tube)."""


@dataclass(frozen=True, slots=True)
class RecalledPerson:
    """One person bound to a positive tube, opened and joined with contacts."""

    round: int
    district: str
    site: str
    tube: str
    registration_id: str
    name: str
    document_type: str
    document_number: str
    phone: str
    address: str
    registry_district: str
    collector: str
    captured_at: str
    """ISO 8601, UTC."""


CSV_HEADER = tuple(f.name for f in fields(RecalledPerson))


class Recall:
    """Finds and opens the people of positive tubes.

    Args:
        store: connected store.
        cipher: opens the sealed name and number of each registration.
        registry: where contacts come from; by default the store's registry.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        registry: PopulationRegistry | None = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._registry = registry or PopulationRegistry(store, cipher)

    async def latest_result(self, tube: str) -> str | None:
        """The tube's latest uploaded result, or None if it has none."""
        statement = self._store.prepare(_LATEST_RESULT)
        rows = await self._store.execute(statement, (tube,), profile="admin")
        return str(rows[0].result) if rows else None

    async def tube(self, code: str) -> list[RecalledPerson]:
        """Everyone bound to one tube whose latest result is POSITIVE.

        Raises:
            RecallError: the code is not a tube barcode, or the tube's latest
                result is not POSITIVE.
        """
        try:
            tube = parse_tube_code(code).code
        except BarcodeError as exc:
            raise RecallError(str(exc), tube=code) from exc
        result = await self.latest_result(tube)
        if result != "POSITIVE":
            raise RecallError(
                "tube is not positive", tube=tube, latest_result=result or "none"
            )
        return await self.people([tube])

    async def positive_tubes(self, round_no: int, district: str) -> list[str]:
        """Tubes of a district whose latest result is POSITIVE, sorted."""
        rows = await asyncio.to_thread(
            self._store.execute_sync, _POSITIVE, (round_no, district)
        )
        return sorted(str(row.tube) for row in rows)

    async def district(self, round_no: int, district: str) -> list[RecalledPerson]:
        """Everyone bound to any positive tube of a district in a round."""
        return await self.people(await self.positive_tubes(round_no, district))

    async def people(self, tubes: Iterable[str]) -> list[RecalledPerson]:
        """Everyone bound to the given tubes, sorted by tube then name."""
        codes = list(tubes)
        members = self._store.prepare(_MEMBERS)
        found = await asyncio.gather(
            *(self._store.execute(members, (c,), profile="admin") for c in codes)
        )
        ids = [row.registration_id for rows in found for row in rows]
        main = self._store.prepare(_MAIN)
        chunks = [ids[i : i + READ_CHUNK] for i in range(0, len(ids), READ_CHUNK)]
        rows = [
            row
            for part in await asyncio.gather(
                *(self._store.execute(main, (c,), profile="admin") for c in chunks)
            )
            for row in part
        ]

        # TODO: the registry holds resident ID cards only; people who showed a
        # passport or a pass are listed without phone or address.
        opened = [self._open(row) for row in rows]
        numbers = [
            number
            for _, doc_type, number in opened
            if doc_type is DocumentType.RESIDENT_ID_CARD
        ]
        contacts = await self._registry.contacts(numbers)
        people = []
        for row, (name, doc_type, number) in zip(rows, opened, strict=True):
            contact = (
                contacts.get(number)
                if doc_type is DocumentType.RESIDENT_ID_CARD
                else None
            )
            people.append(
                RecalledPerson(
                    round=int(row.round),
                    district=str(row.district),
                    site=str(row.site),
                    tube=str(row.tube),
                    registration_id=str(row.registration_id),
                    name=name,
                    document_type=doc_type.name,
                    document_number=number,
                    phone=contact.phone if contact else "",
                    address=contact.address if contact else "",
                    registry_district=contact.district if contact else "",
                    collector=str(row.collector or ""),
                    captured_at=_iso(row.captured_at),
                )
            )
        people.sort(key=lambda p: (p.tube, p.name, p.registration_id))
        log.info(
            "recall_read",
            num_tubes=len(codes),
            num_people=len(people),
            num_without_contact=sum(1 for p in people if not p.phone),
        )
        return people

    def _open(self, row: Any) -> tuple[str, DocumentType, str]:
        rid: uuid.UUID = row.registration_id
        return (
            self._cipher.open(row.name_sealed, rid.bytes),
            DocumentType(int(row.doc_type)),
            self._cipher.open(row.doc_sealed, rid.bytes),
        )


def write_recall_csv(
    people: Iterable[RecalledPerson], out_dir: Path, round_no: int, district: str
) -> Path:
    """Write one district's recall list as ``recall-r<round>-<district>.csv``.

    The file holds personal data, so it is created readable by its owner only
    (mode 0600), replacing an older export of the same round and district.

    Raises:
        OSError: the directory does not exist or cannot be written.
    """
    path = out_dir / f"recall-r{round_no}-{district}.csv"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for person in people:
            writer.writerow(astuple(person))
    return path


def _iso(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="seconds")
