"""The exactly-once check: every sent id counted in every table of the run.

A bench run writes into a keyspace of its own, so after the gateway has
stopped each table is scanned whole and its rows are counted per
registration id (one paged scan per table is far cheaper than a query per id
and table, and it also finds rows of ids that were never sent). The counts
are then read against what the devices sent and were told.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import structlog
from cassandra.query import SimpleStatement

from engine.config import Settings
from engine.store import CqlStore

__all__ = ["TABLES", "StoreCheck", "check_store", "classify"]

log = structlog.get_logger()

TABLES = (
    "registrations",
    "registrations_by_person",
    "registrations_by_tube",
    "registrations_by_round_district",
    "registrations_by_minute",
)
FETCH_SIZE = 5_000
STORED_CODES = (1, 2)
REJECTED_CODE = 3


@dataclass
class StoreCheck:
    """How the store's rows compare with what was sent and acked.

    Attributes:
        sent: distinct registration ids the devices captured and sent.
        acked_stored: ids acked STORED or DUPLICATE (durable, per the engine).
        stored_once: ids with exactly one row in every table.
        lost: ids acked STORED or DUPLICATE missing from some table.
        duplicated: ids with more than one row in some table.
        unacked: ids with no final ack when the run ended.
        unacked_stored: of those, how many are nevertheless fully stored.
        rejected_stored: ids acked REJECTED that have rows anyway.
        stray_rows: rows whose id was never sent.
        rows: rows per table.
        scan_s: seconds the scan took.
    """

    sent: int = 0
    acked_stored: int = 0
    stored_once: int = 0
    lost: int = 0
    duplicated: int = 0
    unacked: int = 0
    unacked_stored: int = 0
    rejected_stored: int = 0
    stray_rows: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    scan_s: float = 0.0


def classify(
    ids: list[bytes], status: np.ndarray, counts: dict[str, Counter[bytes]]
) -> StoreCheck:
    """Compare per-table row counts with the ids sent and their final acks.

    Args:
        ids: 16-byte ids in send order (each sent once).
        status: final ack per id: 0 none, 1 STORED, 2 DUPLICATE, 3 REJECTED.
        counts: rows per id, for each table in :data:`TABLES`.

    Returns:
        The tallies; see :class:`StoreCheck`.
    """
    check = StoreCheck(sent=len(ids))
    check.rows = {table: sum(counts[table].values()) for table in TABLES}
    known = set(ids)
    check.stray_rows = sum(
        n for table in TABLES for key, n in counts[table].items() if key not in known
    )
    for key, code in zip(ids, status.tolist(), strict=True):
        per_table = [counts[table].get(key, 0) for table in TABLES]
        complete = all(n >= 1 for n in per_table)
        once = all(n == 1 for n in per_table)
        check.stored_once += once
        check.duplicated += any(n > 1 for n in per_table)
        if code in STORED_CODES:
            check.acked_stored += 1
            check.lost += not complete
        elif code == REJECTED_CODE:
            check.rejected_stored += any(per_table)
        else:
            check.unacked += 1
            check.unacked_stored += complete
    return check


def _scan(store: CqlStore, table: str) -> Counter[bytes]:
    statement = SimpleStatement(
        f"SELECT registration_id FROM {store.keyspace}.{table}", fetch_size=FETCH_SIZE
    )
    rows = store.session.execute(statement, timeout=120, execution_profile="admin")
    return Counter(row.registration_id.bytes for row in rows)


def check_store(settings: Settings, ids: bytes, status: np.ndarray) -> StoreCheck:
    """Scan the run's keyspace and classify every sent id.

    Args:
        settings: names the run's keyspace and the store.
        ids: concatenated 16-byte ids, in send order.
        status: final ack codes aligned with ``ids``.
    """
    started = time.monotonic()
    keys = [ids[i : i + 16] for i in range(0, len(ids), 16)]
    if len(set(keys)) != len(keys):
        raise ValueError("the load sent some registration id twice as new")
    store = CqlStore(settings)
    try:
        counts = {table: _scan(store, table) for table in TABLES}
    finally:
        store.close()
    check = classify(keys, status, counts)
    check.scan_s = time.monotonic() - started
    log.info(
        "store_checked",
        sent=check.sent,
        stored_once=check.stored_once,
        lost=check.lost,
        duplicated=check.duplicated,
        scan_s=round(check.scan_s, 1),
    )
    return check
