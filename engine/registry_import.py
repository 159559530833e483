"""Importing the population registry from CSV into the store, row by row.

A file has the header ``id_number,name,phone,address,district``. Each row is
checked (the ID number by GB 11643, the name by the gateway's own rule, a
phone shape, an address, a district of the city); a bad row is reported with
its line number and reason, counted, and skipped, and the import goes on.
Good rows are sealed and written as unlogged batches with many requests in
flight; when the file is done, the resident index is merged with the
current version and published as the next one.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import re
import time
import unicodedata
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import structlog
from cassandra.query import BatchStatement, BatchType, BoundStatement

from engine.documents import DocumentType, InvalidDocument, validate_resident_id
from engine.pii import PiiCipher
from engine.registry import PopulationRegistry
from engine.registry_index import (
    RegistryIndex,
    doc_prefix,
    prefix_to_signed,
    prefixes_of,
)
from engine.store import CqlStore
from engine.validation import Rejection, check_name

__all__ = [
    "HEADER",
    "ImportProgress",
    "ImportReport",
    "RegistryImporter",
    "RowError",
    "check_row",
]

log = structlog.get_logger()

HEADER = ("id_number", "name", "phone", "address", "district")
MAX_ADDRESS_CHARS = 200
WRITE_CHUNK = 32
"""Rows per unlogged batch: about 13 KiB of sealed fields."""
PARSE_CHUNK = 4096
"""Rows checked and sealed between two waits for the store."""
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{5,18}[0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INSERT = (
    "INSERT INTO {ks}.registry_residents (prefix, doc_hash, district, name_sealed,"
    " doc_sealed, phone_sealed, address_sealed, imported_at)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that was not imported: where, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Resident:
    """A checked registry row, normalised."""

    id_number: str
    name: str
    phone: str
    address: str
    district: str


@dataclass(slots=True)
class ImportProgress:
    """Counts so far, for progress lines."""

    rows: int = 0
    imported: int = 0
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def rows_per_s(self) -> float:
        """Rows read per second so far."""
        return self.rows / self.elapsed_s if self.elapsed_s else 0.0


@dataclass
class ImportReport:
    """The result of an import.

    Attributes:
        progress: final counts.
        version: the registry version published (0 when nothing imported).
        residents: residents on that version, earlier imports included.
        repeated: lines whose ID number appeared earlier in the file; the
            later line's data is kept.
        errors: the first ``max_errors`` bad rows.
    """

    progress: ImportProgress
    version: int = 0
    residents: int = 0
    repeated: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def check_row(
    row: list[str], districts: Collection[str], today: dt.date
) -> Resident | str:
    """Return the normalised resident, or why the row is refused."""
    if len(row) != len(HEADER):
        return f"has {len(row)} fields, expected {len(HEADER)}"
    raw_id, raw_name, raw_phone, raw_address, raw_district = row
    try:
        id_number = validate_resident_id(raw_id, today)
    except InvalidDocument as exc:
        return f"id_number {exc.detail}"
    name = check_name(raw_name)
    if isinstance(name, Rejection):
        return name.message
    phone = raw_phone.strip()
    if phone and not _PHONE.match(phone):
        return "phone must be 8-20 digits, spaces or hyphens, optional leading +"
    address = " ".join(unicodedata.normalize("NFC", raw_address).split())
    if not address:
        return "address is empty"
    if len(address) > MAX_ADDRESS_CHARS or _CONTROL.search(address):
        return f"address must be at most {MAX_ADDRESS_CHARS} printable characters"
    district = raw_district.strip()
    if district not in districts:
        return f"district {district!r} is not a district of the city"
    return Resident(id_number, name, phone, address, district)


class RegistryImporter:
    """Checks, seals and writes registry rows; publishes the merged index.

    Algorithm: rows are read and checked in chunks of ``PARSE_CHUNK``; each
    chunk's good rows are sealed and sent as unlogged batches of
    ``WRITE_CHUNK`` rows sharing a primary replica, with at most
    ``concurrency`` batches in flight, so checking the next chunk overlaps
    the store's work on this one. A failed batch is retried with doubling
    delay up to ``write_attempts`` times; after that the import stops with
    the store's error (nothing is published, and rerunning is safe because
    every write is an idempotent upsert).

    Args:
        store: connected store.
        cipher: seals the personal fields and hashes ID numbers.
        districts: the city's district codes.
        concurrency: unlogged batches in flight.
        progress_every_s: seconds between progress callbacks.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        districts: Collection[str],
        *,
        concurrency: int = 64,
        write_attempts: int = 5,
        progress_every_s: float = 5.0,
        max_errors: int = 10_000,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._districts = frozenset(districts)
        self._limit = asyncio.Semaphore(concurrency)
        self._attempts = write_attempts
        self._progress_every_s = progress_every_s
        self._max_errors = max_errors
        self._insert = store.prepare(_INSERT)

    async def import_file(
        self,
        path: Path,
        *,
        on_error: Callable[[RowError], None] | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportReport:
        """Import one CSV file; see :meth:`import_rows`."""
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return await self.import_rows(
                handle, on_error=on_error, on_progress=on_progress
            )

    async def import_rows(
        self,
        handle: TextIO,
        *,
        on_error: Callable[[RowError], None] | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportReport:
        """Import CSV text; bad rows go to ``on_error`` and the report.

        Raises:
            ValueError: the header is not ``id_number,name,phone,address,
                district``.
            StoreUnavailable: the store refused writes after retries.
        """
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip().lower() for h in header) != HEADER:
            raise ValueError(f"header must be {','.join(HEADER)}, got {header}")

        report = ImportReport(ImportProgress())
        started = time.monotonic()
        next_progress = started + self._progress_every_s
        prefixes, tails, lines = array("Q"), array("Q"), array("L")
        districts: list[str] = []
        pending: set[asyncio.Task[None]] = set()
        today = dt.date.today()
        for chunk in _chunks(enumerate(reader, start=2), PARSE_CHUNK):
            good: list[tuple[int, Resident]] = []
            for line, row in chunk:
                checked = check_row(row, self._districts, today)
                if isinstance(checked, str):
                    self._refuse(report, RowError(line, checked), on_error)
                else:
                    good.append((line, checked))
            report.progress.rows += len(chunk)
            statements = []
            for line, resident in good:
                doc_hash, statement = self._bind(resident)
                prefixes.append(doc_prefix(doc_hash))
                tails.append(int.from_bytes(doc_hash[8:16], "big"))
                lines.append(line)
                districts.append(resident.district)
                statements.append(statement)
            for group in self._store.group_by_replica(statements, chunk=WRITE_CHUNK):
                await self._limit.acquire()
                task = asyncio.get_running_loop().create_task(self._write(group))
                pending.add(task)
                task.add_done_callback(pending.discard)
            report.progress.imported += len(good)
            now = time.monotonic()
            if on_progress is not None and now >= next_progress:
                report.progress.elapsed_s = now - started
                on_progress(report.progress)
                next_progress = now + self._progress_every_s
        await asyncio.gather(*pending)

        new = self._dedupe(report, prefixes, tails, lines, districts, on_error)
        if new is not None:
            registry = PopulationRegistry(self._store, self._cipher)
            current = await asyncio.to_thread(registry.load_index)
            merged = current.merged(new, current.version + 1)
            await registry.publish(merged)
            report.version, report.residents = merged.version, merged.size
        report.progress.elapsed_s = time.monotonic() - started
        log.info(
            "registry_imported",
            rows=report.progress.rows,
            imported=report.progress.imported,
            errors=report.progress.errors,
            version=report.version,
            elapsed_s=round(report.progress.elapsed_s, 1),
        )
        return report

    async def add_to_index(self, residents: Iterable[tuple[str, str]]) -> int:
        """Publish residents into the index without contact rows; the version.

        The fast path for synthetic registries of tests and benchmarks: the
        (ID number, district) pairs must already be valid and unique. Such
        residents count for coverage and missed counts, but have no contact
        to list until a full import of their rows.
        """
        hashes, districts = [], []
        for id_number, district in residents:
            hashes.append(
                self._cipher.lookup_hash(DocumentType.RESIDENT_ID_CARD, id_number)
            )
            districts.append(district)
        new = RegistryIndex.build(0, prefixes_of(hashes), districts)
        registry = PopulationRegistry(self._store, self._cipher)
        current = await asyncio.to_thread(registry.load_index)
        merged = current.merged(new, current.version + 1)
        await registry.publish(merged)
        return merged.version

    def _refuse(
        self,
        report: ImportReport,
        error: RowError,
        on_error: Callable[[RowError], None] | None,
    ) -> None:
        report.progress.errors += 1
        if len(report.errors) < self._max_errors:
            report.errors.append(error)
        if on_error is not None:
            on_error(error)

    def _bind(self, resident: Resident) -> tuple[bytes, BoundStatement]:
        seal = self._cipher.seal
        doc_hash = self._cipher.lookup_hash(
            DocumentType.RESIDENT_ID_CARD, resident.id_number
        )
        return doc_hash, self._insert.bind(
            (
                prefix_to_signed(doc_prefix(doc_hash)),
                doc_hash,
                resident.district,
                seal(resident.name, doc_hash),
                seal(resident.id_number, doc_hash),
                seal(resident.phone, doc_hash),
                seal(resident.address, doc_hash),
                int(time.time() * 1000),
            )
        )

    async def _write(self, group: list[BoundStatement]) -> None:
        try:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for statement in group:
                batch.add(statement)
            batch.is_idempotent = True
            delay_s = 0.1
            for attempt in range(1, self._attempts + 1):
                try:
                    await self._store.execute(batch, profile="admin")
                    return
                except Exception as exc:
                    if attempt == self._attempts:
                        raise
                    log.warning(
                        "registry_write_retry",
                        attempt=attempt,
                        retry_in_ms=int(delay_s * 1000),
                        error=str(exc),
                    )
                    await asyncio.sleep(delay_s)
                    delay_s *= 2
        finally:
            self._limit.release()

    def _dedupe(
        self,
        report: ImportReport,
        prefixes: array[int],
        tails: array[int],
        lines: array[int],
        districts: list[str],
        on_error: Callable[[RowError], None] | None,
    ) -> RegistryIndex | None:
        """The imported residents as an index, one entry per ID number."""
        if not prefixes:
            return None
        keys = np.frombuffer(prefixes, np.uint64)
        tail = np.frombuffer(tails, np.uint64)
        line = np.frombuffer(lines, np.uint32 if lines.itemsize == 4 else np.uint64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        # Within a run of equal prefixes the last line (by file order) wins.
        last = np.ones(sorted_keys.size, bool)
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        for position in np.flatnonzero(~last):
            earlier, later = order[position], order[position + 1]
            if tail[earlier] == tail[later]:
                report.repeated.append(int(line[earlier]))
            else:
                # NOTE: two different ID numbers with the same 8-byte prefix;
                # the store holds only one row per prefix.
                self._refuse(
                    report,
                    RowError(
                        int(line[later]),
                        "hash prefix collides with an"
                        f" earlier line {int(line[earlier])}",
                    ),
                    on_error,
                )
        keep = order[last]
        return RegistryIndex.build(0, keys[keep], [districts[i] for i in keep])


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
