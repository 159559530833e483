"""The store half of the ceiling: the engine's rows written by a bare client.

Spawned processes each hold one driver session and write, for every
registration, the same five rows the shards write (main row and four index
rows, same statements, same value sizes), as unlogged batches of up to
``WRITE_CHUNK`` rows like the shards send, with ``concurrency`` requests in
flight. No read-before-write, no Ray, no gRPC: what is left is the store node
and the driver. Rows go to the keyspace ``bench_ceiling`` (ids are random).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import random
import resource
import time
import uuid
from typing import Any

import structlog
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from engine.config import Settings
from engine.counters import minute_of
from engine.pii import Keyring, PiiCipher
from engine.registration_rows import (  # the very statements the shards use
    INSERT_MAIN,
    INSERT_MINUTE,
    INSERT_PERSON,
    INSERT_ROUND,
    INSERT_TUBE,
    ROUND_BUCKETS,
)
from engine.shard import WRITE_CHUNK
from engine.stack import prepare_store
from engine.store import CqlStore
from perf.people import PersonFactory

__all__ = ["CEILING_KEYSPACE", "measure_store_ceiling"]

log = structlog.get_logger()

CEILING_KEYSPACE = "bench_ceiling"
"""One keyspace for every run's ceiling rows, never dropped: dropping a
keyspace while the node still holds queued writes for it broke schema changes
on this Cassandra 5.0.6 node until it was restarted."""
ROWS_PER_REGISTRATION = 5
_POOL = 2_000
"""Distinct people sealed up front and reused with fresh ids, so the client
spends its CPU on the driver rather than on AES."""


def _people(cipher: PiiCipher, seed: int) -> list[tuple[str, bytes, bytes, bytes]]:
    factory = PersonFactory(seed)
    pool = []
    for _ in range(_POOL):
        person = factory.person()
        rid = uuid.uuid4().bytes
        pool.append(
            (
                person.id_number,
                cipher.seal(person.name, rid),
                cipher.seal(person.id_number, rid),
                cipher.lookup_hash(1, person.id_number),
            )
        )
    return pool


def _writer(settings: Settings, seconds: float, concurrency: int, worker: int) -> Any:
    store = CqlStore(settings)
    store.connect()
    cipher = PiiCipher(Keyring.load(settings.keys_file))
    statements = [
        store.prepare(text)
        for text in (INSERT_PERSON, INSERT_TUBE, INSERT_ROUND, INSERT_MINUTE)
    ]
    person_s, tube_s, round_s, minute_s = statements
    main_s = store.prepare(INSERT_MAIN)
    pool = _people(cipher, seed=worker)
    rng = random.Random(worker)
    per_batch = max(1, WRITE_CHUNK // ROWS_PER_REGISTRATION)
    written = 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.monotonic()
    deadline = started + seconds

    def batches() -> Any:
        nonlocal written
        sequence = 0
        while time.monotonic() < deadline:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            now_ms = time.time_ns() // 1_000_000
            for _ in range(per_batch):
                sequence += 1
                _, name_sealed, doc_sealed, doc_hash = pool[sequence % _POOL]
                rid = uuid.UUID(int=rng.getrandbits(128), version=4)
                tube = f"TCEIL{worker:02d}{sequence // 10:09d}"
                district = "120101"
                batch.add(
                    person_s,
                    (doc_hash, now_ms, rid, 1, tube, "120101-001", district, now_ms),
                )
                batch.add(
                    tube_s, (tube, rid, 1, doc_hash, "120101-001", district, now_ms)
                )
                batch.add(
                    round_s,
                    (1, district, doc_hash[0] % ROUND_BUCKETS, doc_hash, rid,
                     "120101-001", tube, now_ms),
                )  # fmt: skip
                batch.add(
                    minute_s, (1, district, minute_of(now_ms), rid, "120101-001", "D1")
                )
                batch.add(
                    main_s,
                    (rid, uuid.uuid4(), 1, tube, name_sealed, 1, doc_sealed, doc_hash,
                     "120101-001", district, "D1", "C1", now_ms, now_ms),
                )  # fmt: skip
            written += per_batch
            yield batch, None

    results = execute_concurrent(
        store.session,
        batches(),
        concurrency=concurrency,
        raise_on_first_error=False,
        results_generator=True,
    )
    failed = sum(1 for ok, _ in results if not ok)
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    store.close()
    return {
        "registrations": written - failed * per_batch,
        "failed_batches": failed,
        "seconds": elapsed,
        "client_cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
    }


def _entry(
    settings: Settings, seconds: float, concurrency: int, worker: int, out: Any
) -> None:
    out.put(_writer(settings, seconds, concurrency, worker))


def measure_store_ceiling(
    settings: Settings, *, seconds: float, procs: int = 2, concurrency: int = 32
) -> dict[str, Any]:
    """Write for ``seconds`` from ``procs`` processes; registrations per second.

    Args:
        settings: the run's settings (store address, keys); the keyspace is
            replaced by :data:`CEILING_KEYSPACE`.
        seconds: how long each process writes.
        procs: writer processes.
        concurrency: batches in flight per process.

    Returns:
        ``per_s`` (registrations per second, all processes), the totals, and
        the client processes' CPU seconds.
    """
    ceiling = dataclasses.replace(settings, cql_keyspace=CEILING_KEYSPACE)
    prepare_store(ceiling)
    context = mp.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(
            target=_entry,
            args=(ceiling, seconds, concurrency, worker, out),
            daemon=True,
        )
        for worker in range(procs)
    ]
    for process in processes:
        process.start()
    parts = [out.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(30)
    registrations = sum(part["registrations"] for part in parts)
    elapsed = max(part["seconds"] for part in parts)
    result = {
        "per_s": registrations / elapsed if elapsed else 0.0,
        "registrations": registrations,
        "seconds": elapsed,
        "failed_batches": sum(part["failed_batches"] for part in parts),
        "client_cpu_s": sum(part["client_cpu_s"] for part in parts),
        "procs": procs,
        "concurrency": concurrency,
    }
    log.info("store_ceiling", per_s=round(result["per_s"]), procs=procs)
    return result
