"""Turning a round comparison into named rows: contacts, CSV files per district.

Registry residents are resolved through the registry (ID number, name,
phone, address); people not on it through their latest registration (ID
number and name only). Rows are produced in chunks so a district of a
million missed residents never sits in memory as Python objects at once.
"""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine.pii import PiiCipher
from engine.registry import PopulationRegistry
from engine.registry_index import RegistryIndex
from engine.rounds import DistrictDiff
from engine.store import CqlStore

__all__ = ["CSV_HEADER", "ComparisonRow", "RowResolver", "write_district_csv"]

CSV_HEADER = ("list", "id_number", "name", "phone", "address", "on_registry")
RESOLVE_CHUNK = 2_000
"""People resolved per round of store reads."""

_LATEST_REGISTRATION = (
    "SELECT registration_id FROM {ks}.registrations_by_person"
    " WHERE doc_hash = ? LIMIT 1"
)
_MAIN_ROW = (
    "SELECT name_sealed, doc_sealed FROM {ks}.registrations WHERE registration_id = ?"
)


class ComparisonRow(NamedTuple):
    """One person on a missed or new list."""

    district: str
    list: str
    """``missed`` or ``new``."""
    id_number: str
    name: str
    phone: str
    address: str
    on_registry: bool


class RowResolver:
    """Names the people of a comparison.

    Args:
        store: connected store.
        cipher: opens sealed fields.
    """

    def __init__(self, store: CqlStore, cipher: PiiCipher) -> None:
        self._store = store
        self._cipher = cipher
        self._registry = PopulationRegistry(store, cipher)
        self._limit = asyncio.Semaphore(32)

    async def rows(
        self, diff: DistrictDiff, index: RegistryIndex, *, lists: Iterable[str]
    ) -> AsyncIterator[list[ComparisonRow]]:
        """Chunks of rows of ``diff``: the missed, then the new, as asked."""
        wanted = set(lists)
        for name, residents, visitors in (
            ("missed", diff.missed, diff.missed_visitors),
            ("new", diff.new, diff.new_visitors),
        ):
            if name not in wanted:
                continue
            positions = np.fromiter(residents, np.int64, len(residents))
            for start in range(0, positions.size, RESOLVE_CHUNK):
                chunk = index.prefixes[positions[start : start + RESOLVE_CHUNK]]
                found = await self._registry.contacts_by_prefix(int(p) for p in chunk)
                yield [
                    ComparisonRow(
                        diff.district,
                        name,
                        c.id_number,
                        c.name,
                        c.phone,
                        c.address,
                        True,
                    )
                    for c in (found.get(int(p)) for p in chunk)
                    if c is not None
                ]
            hashes = sorted(visitors)
            for start in range(0, len(hashes), RESOLVE_CHUNK):
                people = await asyncio.gather(
                    *(self._visitor(h) for h in hashes[start : start + RESOLVE_CHUNK])
                )
                yield [
                    ComparisonRow(diff.district, name, number, person, "", "", False)
                    for number, person in (p for p in people if p is not None)
                ]

    # TODO: people not on the registry are listed with ID number and name
    # only (no phone or address is collected at registration).
    async def _visitor(self, doc_hash: bytes) -> tuple[str, str] | None:
        """(ID number, name) from a person's latest registration."""
        async with self._limit:
            rows = await self._store.execute(
                self._store.prepare(_LATEST_REGISTRATION),
                (doc_hash,),
                profile="lookup",
            )
            if not rows:
                return None
            rid: uuid.UUID = rows[0].registration_id
            main = await self._store.execute(
                self._store.prepare(_MAIN_ROW), (rid,), profile="lookup"
            )
        if not main:
            return None
        return (
            self._cipher.open(main[0].doc_sealed, rid.bytes),
            self._cipher.open(main[0].name_sealed, rid.bytes),
        )


async def write_district_csv(
    path: Path, chunks: AsyncIterator[list[ComparisonRow]]
) -> int:
    """Write one district's rows as CSV; returns the rows written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        async for chunk in chunks:
            for row in chunk:
                writer.writerow(
                    (
                        row.list,
                        row.id_number,
                        row.name,
                        row.phone,
                        row.address,
                        "yes" if row.on_registry else "no",
                    )
                )
            count += len(chunk)
    return count
