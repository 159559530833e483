"""Shared test helpers: registrations, device credentials and store counts."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Sequence

from cassandra.concurrent import execute_concurrent_with_args

from engine.auth import make_device_token
from engine.config import Settings
from engine.pii import Keyring
from engine.store import CqlStore
from engine.tube_allocation import TubeAllocator
from perf.people import PersonFactory
from sieve.v1 import ingest_pb2

INDEX_TABLES = (
    "registrations_by_person",
    "registrations_by_tube",
    "registrations_by_round_district",
    "registrations_by_minute",
)


def device_token(settings: Settings, device_id: str) -> str:
    """The token a generated device presents."""
    return make_device_token(Keyring.load(settings.keys_file).device_token, device_id)


def allocate_tubes(
    store: CqlStore, site: str, count: int, *, capacity: int = 10
) -> list[str]:
    """Tube codes for ``count`` residents at a site, allocated for real."""
    needed = -(-count // capacity)
    batch = TubeAllocator(store).allocate(site, needed, capacity, "test-printer")
    return batch.codes()


def make_registrations(
    count: int,
    site: str,
    *,
    tubes: Sequence[str],
    seed: int = 0,
    round_no: int = 1,
    per_tube: int = 10,
    collector: str = "C000001",
) -> list[ingest_pb2.Registration]:
    """Valid registrations at one site, ``per_tube`` to each of ``tubes``."""
    if len(tubes) * per_tube < count:
        raise ValueError(f"{len(tubes)} tubes cannot hold {count} residents")
    people = PersonFactory(seed)
    rng = random.Random(seed)
    now_ms = time.time_ns() // 1_000_000
    result = []
    for index in range(count):
        person = people.person()
        result.append(
            ingest_pb2.Registration(
                registration_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                round=round_no,
                tube_barcode=tubes[index // per_tube],
                name=person.name,
                document_type=ingest_pb2.RESIDENT_ID_CARD,
                document_number=person.id_number,
                site_id=site,
                collector_id=collector,
                captured_at_ms=now_ms,
            )
        )
    return result


def stored_ids(store: CqlStore, ids: Iterable[str]) -> dict[str, int]:
    """How many main rows exist for each id (0 or 1 in a healthy store)."""
    statement = store.prepare(
        "SELECT registration_id FROM {ks}.registrations WHERE registration_id = ?"
    )
    keys = list(ids)
    results = execute_concurrent_with_args(
        store.session,
        statement,
        [(uuid.UUID(key),) for key in keys],
        concurrency=200,
        raise_on_first_error=True,
    )
    return {
        key: len(list(result.result_or_exc))
        for key, result in zip(keys, results, strict=True)
    }


def count_rows(store: CqlStore, table: str) -> int:
    """Rows in a whole table (small test keyspaces only)."""
    rows = store.execute_sync(f"SELECT COUNT(*) FROM {{ks}}.{table}")
    return int(rows[0].count)
