"""The statements of the journey tables, prepared once, and how they are sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any

from cassandra.query import BoundStatement

from engine.store import CqlStore

__all__ = ["JourneyStatements"]

_STATEMENTS = {
    "tubes": "SELECT tube, round, district, site, first_bound_at, sealed_at,"
    " dispatched_at, received_at, tested_at FROM {ks}.tubes WHERE tube IN ?",
    "latest_result": "SELECT result FROM {ks}.tube_results WHERE tube = ? LIMIT 1",
    "seal": "UPDATE {ks}.tubes SET sealed_at = ?, sealed_by = ? WHERE tube = ?",
    "boxed": "UPDATE {ks}.tubes SET box = ?, box_trip = ?, boxed_at = ? WHERE tube = ?",
    "dispatched": "UPDATE {ks}.tubes SET dispatched_at = ? WHERE tube = ?",
    "received": "UPDATE {ks}.tubes SET received_at = ?, received_box = ?, lab = ?"
    " WHERE tube = ?",
    "tested": "UPDATE {ks}.tubes SET tested_at = ?, result = ? WHERE tube = ?",
    "event": "INSERT INTO {ks}.tube_events (tube, event_id, stage, at, actor, box,"
    " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "stage": "INSERT INTO {ks}.stage_by_minute (round, district, stage, minute,"
    " tube, waited_ms) VALUES (?, ?, ?, ?, ?, ?)",
    "open": "INSERT INTO {ks}.box_trips (box, trip, round, district, site, state,"
    " transporter, opened_at, opened_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "trip_district": "INSERT INTO {ks}.box_trips_by_district (round, district,"
    " box, trip) VALUES (?, ?, ?, ?)",
    "load": "INSERT INTO {ks}.box_tubes (box, trip, tube, loaded_at)"
    " VALUES (?, ?, ?, ?)",
    "dispatch": "UPDATE {ks}.box_trips SET state = ?, vehicle = ?, lab = ?,"
    " dispatched_at = ?, dispatched_event = ? WHERE box = ? AND trip = ?",
    "receive": "UPDATE {ks}.box_trips SET state = ?, received_at = ?,"
    " received_by = ?, received_event = ?, lab = ? WHERE box = ? AND trip = ?",
    "unload": "UPDATE {ks}.box_tubes SET received_at = ? WHERE box = ? AND trip = ?"
    " AND tube = ?",
    "receipt": "INSERT INTO {ks}.tube_receipts (round, district, tube, event_id,"
    " box, lab, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "tube_district": "INSERT INTO {ks}.tubes_by_district (round, district, site,"
    " tube) VALUES (?, ?, ?, ?)",
    "result": "INSERT INTO {ks}.tube_results (tube, uploaded_at, upload_id, result,"
    " lab, round, district) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "positive": "INSERT INTO {ks}.positive_tubes (round, district, tube, result_at,"
    " lab) VALUES (?, ?, ?, ?, ?)",
    "not_positive": "DELETE FROM {ks}.positive_tubes WHERE round = ? AND"
    " district = ? AND tube = ?",
}

_READ_CHUNK = 50


class JourneyStatements:
    """Binds and sends journey statements with bounded concurrency.

    Args:
        store: connected store.
        concurrency: statements in flight at once.
    """

    def __init__(self, store: CqlStore, *, concurrency: int = 64) -> None:
        self._store = store
        self._limit = asyncio.Semaphore(concurrency)
        self._prepared = {
            name: store.prepare(text) for name, text in _STATEMENTS.items()
        }

    def bind(self, name: str, *values: Any) -> BoundStatement:
        """One statement by name (see ``_STATEMENTS``) with its values."""
        return self._prepared[name].bind(values)

    def event(
        self,
        tube: str,
        event_id: bytes,
        stage: str,
        at_ms: int,
        actor: str,
        *,
        box: str = "",
        detail: str = "",
    ) -> BoundStatement:
        """A row of a tube's history."""
        return self.bind(
            "event", tube, uuid.UUID(bytes=event_id), stage, at_ms, actor, box, detail
        )

    async def write(self, statements: list[BoundStatement]) -> None:
        """Send every statement; all must succeed.

        Raises:
            StoreUnavailable: one or more did not; resending all is safe.
        """

        async def one(statement: BoundStatement) -> Any:
            async with self._limit:
                return await self._store.execute(statement, profile="ingest")

        calls: list[Awaitable[Any]] = [one(s) for s in statements]
        await asyncio.gather(*calls)

    async def tube_rows(self, codes: Iterable[str]) -> dict[str, Any]:
        """The ``tubes`` rows of the codes that have one."""
        ordered = sorted(set(codes))
        found: dict[str, Any] = {}
        for start in range(0, len(ordered), _READ_CHUNK):
            chunk = ordered[start : start + _READ_CHUNK]
            for row in await self._store.execute(
                self._prepared["tubes"], (chunk,), profile="ingest"
            ):
                found[row.tube] = row
        return found

    async def latest_result(self, tube: str) -> str | None:
        """The tube's latest uploaded result, or None."""
        rows = await self._store.execute(
            self._prepared["latest_result"], (tube,), profile="ingest"
        )
        return str(rows[0].result) if rows else None
