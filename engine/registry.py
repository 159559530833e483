"""The population registry in the store: residents' contacts and the index.

Residents are rows of ``registry_residents`` keyed by the prefix of their
look-up hash, with name, ID number, phone and address sealed (bound to the
hash). Each import publishes a new version of the resident index
(:class:`~engine.registry_index.RegistryIndex`) as blob chunks, and the
expected population per district with it. Imports only add or update
residents, so an older version's positions map into a newer one by prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import structlog

from engine.documents import DocumentType
from engine.pii import PiiCipher
from engine.registry_index import (
    RegistryIndex,
    doc_prefix,
    prefix_to_signed,
    signed_to_prefix,
)
from engine.store import CqlStore

__all__ = ["REGISTRY_SCOPE", "Contact", "PopulationRegistry"]

log = structlog.get_logger()

REGISTRY_SCOPE = "population"
"""The one partition of ``registry_versions``."""

READ_CHUNK = 100
"""Prefixes per IN query."""

_SELECT_RESIDENTS = (
    "SELECT prefix, doc_hash, district, name_sealed, doc_sealed, phone_sealed,"
    " address_sealed FROM {ks}.registry_residents WHERE prefix IN ?"
)
_SELECT_VERSION = (
    "SELECT version, residents, chunks, districts FROM {ks}.registry_versions"
    " WHERE scope = %s LIMIT 1"
)
_SELECT_ONE_VERSION = (
    "SELECT version, residents, chunks, districts FROM {ks}.registry_versions"
    " WHERE scope = %s AND version = %s"
)
_SELECT_CHUNKS = (
    "SELECT chunk, prefixes, districts FROM {ks}.registry_index_chunks"
    " WHERE version = %s"
)
_INSERT_CHUNK = (
    "INSERT INTO {ks}.registry_index_chunks (version, chunk, prefixes, districts)"
    " VALUES (?,?,?,?)"
)
_INSERT_POPULATION = (
    "INSERT INTO {ks}.registry_population (version, district, residents) VALUES (?,?,?)"
)
_INSERT_VERSION = (
    "INSERT INTO {ks}.registry_versions (scope, version, residents, chunks,"
    " districts, published_at) VALUES (?,?,?,?,?,?)"
)
_SELECT_POPULATION = (
    "SELECT district, residents FROM {ks}.registry_population WHERE version = %s"
)


class Contact(NamedTuple):
    """What the registry knows of a resident, opened."""

    id_number: str
    name: str
    phone: str
    address: str
    district: str


class PopulationRegistry:
    """Reads and publishes the population registry.

    Args:
        store: connected store.
        cipher: opens the sealed fields and hashes ID numbers.
    """

    def __init__(self, store: CqlStore, cipher: PiiCipher) -> None:
        self._store = store
        self._cipher = cipher

    async def contacts(self, doc_numbers: Iterable[str]) -> dict[str, Contact]:
        """Contacts of the residents with these ID numbers, where registered.

        Args:
            doc_numbers: resident ID numbers (``x`` is read as ``X``).

        Returns:
            The registry's contact per given number; numbers not on the
            registry are absent.
        """
        by_prefix: dict[int, str] = {}
        for number in doc_numbers:
            normal = number.strip().upper()
            doc_hash = self._cipher.lookup_hash(DocumentType.RESIDENT_ID_CARD, normal)
            by_prefix[doc_prefix(doc_hash)] = number
        found = await self.contacts_by_prefix(by_prefix)
        return {by_prefix[prefix]: contact for prefix, contact in found.items()}

    async def contacts_by_prefix(self, prefixes: Iterable[int]) -> dict[int, Contact]:
        """Contacts of residents by the uint64 prefix of their look-up hash."""
        statement = self._store.prepare(_SELECT_RESIDENTS)
        keys = [prefix_to_signed(p) for p in prefixes]
        groups = [keys[i : i + READ_CHUNK] for i in range(0, len(keys), READ_CHUNK)]
        limit = asyncio.Semaphore(32)

        async def read(group: list[int]) -> list[Any]:
            async with limit:
                return await self._store.execute(statement, (group,), profile="lookup")

        results = await asyncio.gather(*(read(g) for g in groups))
        return {
            signed_to_prefix(row.prefix): self._open(row)
            for rows in results
            for row in rows
        }

    def _open(self, row: Any) -> Contact:
        doc_hash = bytes(row.doc_hash)
        return Contact(
            id_number=self._cipher.open(row.doc_sealed, doc_hash),
            name=self._cipher.open(row.name_sealed, doc_hash),
            phone=self._cipher.open(row.phone_sealed, doc_hash),
            address=self._cipher.open(row.address_sealed, doc_hash),
            district=row.district,
        )

    def current_version(self) -> int:
        """The latest published version; 0 when no registry was imported."""
        rows = self._store.execute_sync(
            _SELECT_VERSION, (REGISTRY_SCOPE,), profile="lookup"
        )
        return int(rows[0].version) if rows else 0

    def load_index(self, version: int | None = None) -> RegistryIndex:
        """A published index: ``version``, or the latest (empty when none)."""
        if version == 0:
            return RegistryIndex.empty()
        if version is None:
            rows = self._store.execute_sync(_SELECT_VERSION, (REGISTRY_SCOPE,))
        else:
            rows = self._store.execute_sync(
                _SELECT_ONE_VERSION, (REGISTRY_SCOPE, version)
            )
        if not rows:
            return RegistryIndex.empty()
        meta = rows[0]
        chunks = sorted(
            self._store.execute_sync(_SELECT_CHUNKS, (meta.version,)),
            key=lambda row: int(row.chunk),
        )
        if len(chunks) != meta.chunks:
            raise ValueError(
                f"registry version {meta.version} has {len(chunks)} of"
                f" {meta.chunks} index chunks"
            )
        districts = tuple(meta.districts.split(",")) if meta.districts else ()
        index = RegistryIndex.from_chunks(
            int(meta.version),
            districts,
            [(bytes(c.prefixes), bytes(c.districts)) for c in chunks],
        )
        log.info("registry_index_loaded", version=index.version, residents=index.size)
        return index

    # TODO: residents can be added or updated but never removed (moved away,
    # deceased); removal would need a version whose positions no longer
    # cover the older ones, and rebasing parts would have to drop them.
    async def publish(self, index: RegistryIndex) -> None:
        """Store an index's chunks and population, then make it current.

        The version row is written last, so readers never see a version
        whose chunks are not all stored.
        """
        chunk = self._store.prepare(_INSERT_CHUNK)
        population = self._store.prepare(_INSERT_POPULATION)
        version = self._store.prepare(_INSERT_VERSION)
        chunks = list(index.chunks())
        await _all(
            self._store.execute(
                chunk, (index.version, number, prefixes, codes), profile="admin"
            )
            for number, prefixes, codes in chunks
        )
        await _all(
            self._store.execute(
                population, (index.version, district, count), profile="admin"
            )
            for district, count in index.population().items()
        )
        await self._store.execute(
            version,
            (
                REGISTRY_SCOPE,
                index.version,
                index.size,
                len(chunks),
                ",".join(index.districts),
                int(time.time() * 1000),
            ),
            profile="admin",
        )
        log.info("registry_published", version=index.version, residents=index.size)

    def expected_population(self) -> dict[str, int]:
        """Residents per district on the current registry (empty if none)."""
        version = self.current_version()
        if version == 0:
            return {}
        rows = self._store.execute_sync(
            _SELECT_POPULATION, (version,), profile="lookup"
        )
        return {row.district: int(row.residents) for row in rows}


async def _all(calls: Iterable[Any], concurrency: int = 8) -> Sequence[Any]:
    limit = asyncio.Semaphore(concurrency)

    async def limited(call: Any) -> Any:
        async with limit:
            return await call

    return await asyncio.gather(*(limited(c) for c in calls))
