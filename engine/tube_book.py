"""A shard's tubes: which exist, who is filling them, how full, whether sealed.

Every registration of a tube is routed to the same logical shard (the router
keys on the tube code), so the shard that owns a tube is the only one that
binds residents to it or seals it. It keeps each tube's state in memory,
loaded from the store the first time the tube is seen, and decides on the
spot: binding to an unknown, sealed or full tube, to a tube another collector
is filling, or to a tube of another round is refused.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cassandra.query import BoundStatement

from engine.barcodes import parse_tube_code
from engine.registration import Registration, RejectReason
from engine.store import CqlStore
from engine.tube_allocation import SiteBatches, TubeAllocator

__all__ = ["TubeBook", "TubeState"]

_READ_CHUNK = 50
_UNKNOWN_TTL_S = 10.0
"""How long a tube found unallocated stays unknown before the store is asked
again (a printer may allocate it meanwhile)."""

_SELECT_TUBES = (
    "SELECT tube, round, collector, capacity, sealed_at, first_bound_at"
    " FROM {ks}.tubes WHERE tube IN ?"
)
_SELECT_MEMBERS = (
    "SELECT tube, registration_id FROM {ks}.registrations_by_tube WHERE tube IN ?"
)
_UPSERT_TUBE = (
    "UPDATE {ks}.tubes SET round = ?, district = ?, site = ?, capacity = ?,"
    " collector = ?, first_bound_at = ? WHERE tube = ?"
)
_INSERT_BY_DISTRICT = (
    "INSERT INTO {ks}.tubes_by_district (round, district, site, tube)"
    " VALUES (?, ?, ?, ?)"
)


@dataclass(slots=True)
class TubeState:
    """What the owning shard knows of one tube."""

    code: str
    capacity: int
    round: int | None = None
    collector: str | None = None
    sealed_at_ms: int | None = None
    first_bound_ms: int | None = None
    members: set[bytes] = field(default_factory=set)
    written: bool = False
    """Whether the tube's row (fixed at its first binding) is in the store."""

    @property
    def sealed(self) -> bool:
        """Whether a collector sealed it; a sealed tube takes no one else."""
        return self.sealed_at_ms is not None


class TubeBook:
    """Tube states of one shard host, loaded on demand, decided in memory.

    Args:
        store: connected store.
        max_tubes: states kept; the oldest are dropped past it and reloaded
            from the store if seen again.
    """

    def __init__(self, store: CqlStore, *, max_tubes: int = 500_000) -> None:
        self._store = store
        self._allocator = TubeAllocator(store)
        self._tubes: OrderedDict[str, TubeState] = OrderedDict()
        self._sites: dict[str, SiteBatches] = {}
        self._unknown: dict[str, float] = {}
        self._max_tubes = max_tubes
        self._select_tubes = store.prepare(_SELECT_TUBES)
        self._select_members = store.prepare(_SELECT_MEMBERS)
        self._upsert = store.prepare(_UPSERT_TUBE)
        self._by_district = store.prepare(_INSERT_BY_DISTRICT)

    def get(self, code: str) -> TubeState | None:
        """The loaded state of a tube, or None if unknown or not loaded."""
        return self._tubes.get(code)

    async def load(self, codes: Iterable[str]) -> None:
        """Make sure every allocated tube among ``codes`` has its state loaded.

        Raises:
            StoreUnavailable: the store did not answer.
        """
        now = time.monotonic()
        wanted = {
            code
            for code in codes
            if code not in self._tubes and self._unknown.get(code, 0.0) <= now
        }
        if not wanted:
            return
        capacity: dict[str, int] = {}
        for code in wanted:
            batch = await self._batch_of(code)
            if batch is None:
                self._unknown[code] = now + _UNKNOWN_TTL_S
            else:
                capacity[code] = batch
        ordered = sorted(capacity)
        states = {code: TubeState(code, capacity[code]) for code in ordered}
        for start in range(0, len(ordered), _READ_CHUNK):
            chunk = ordered[start : start + _READ_CHUNK]
            for row in await self._store.execute(
                self._select_tubes, (chunk,), profile="ingest"
            ):
                state = states[row.tube]
                state.round = row.round
                state.collector = row.collector
                state.sealed_at_ms = _ms(row.sealed_at)
                state.first_bound_ms = _ms(row.first_bound_at)
                state.written = row.round is not None
            for row in await self._store.execute(
                self._select_members, (chunk,), profile="ingest"
            ):
                states[row.tube].members.add(row.registration_id.bytes)
        for code, state in states.items():
            # Another batch may have loaded (and started filling) it meanwhile.
            self._tubes.setdefault(code, state)
            self._unknown.pop(code, None)
        while len(self._tubes) > self._max_tubes:
            # TODO: a dropped tube with a write still in flight reloads without
            # that write's members and could take one resident too many.
            self._tubes.popitem(last=False)

    async def _batch_of(self, code: str) -> int | None:
        parsed = parse_tube_code(code)
        batches = self._sites.get(parsed.site)
        batch = None if batches is None else batches.find(parsed.serial)
        if batch is None:
            batches = await self._allocator.batches_async(parsed.site)
            self._sites[parsed.site] = batches
            batch = batches.find(parsed.serial)
        return None if batch is None else batch.capacity

    def bind(self, record: Registration) -> RejectReason | None:
        """Bind a registration to its tube, or say why it may not be.

        Call :meth:`load` for the tube first. Synchronous, so two batches of
        one shard can never both take a tube's last place.
        """
        state = self._tubes.get(record.tube)
        if state is None:
            return RejectReason.TUBE_UNKNOWN
        if record.registration_id in state.members:
            return None
        if state.sealed:
            return RejectReason.TUBE_SEALED
        if state.round is not None and state.round != record.round:
            return RejectReason.TUBE_OTHER_ROUND
        if state.members and state.collector not in (None, record.collector):
            return RejectReason.TUBE_IN_USE
        if len(state.members) >= state.capacity:
            return RejectReason.TUBE_FULL
        state.members.add(record.registration_id)
        state.round = record.round
        state.collector = record.collector
        if state.first_bound_ms is None:
            state.first_bound_ms = record.captured_at_ms
        self._tubes.move_to_end(record.tube)
        return None

    def mark_written(self, records: Iterable[Registration]) -> None:
        """Note that the rows of these registrations' tubes are stored."""
        for record in records:
            state = self._tubes.get(record.tube)
            if state is not None:
                state.written = True

    def unbind(self, records: Iterable[Registration]) -> None:
        """Undo :meth:`bind` for registrations whose write failed."""
        for record in records:
            state = self._tubes.get(record.tube)
            if state is not None:
                state.members.discard(record.registration_id)

    def mark_sealed(self, code: str, sealed_at_ms: int | None) -> None:
        """Record a seal (None undoes one whose write failed)."""
        state = self._tubes.get(code)
        if state is not None:
            state.sealed_at_ms = sealed_at_ms

    def binding_statements(
        self, records: Iterable[Registration]
    ) -> list[BoundStatement]:
        """Upserts of the rows of tubes first bound in a batch.

        A tube's row is fixed by its first binding, so it is written until
        :meth:`mark_written` says it is stored, and not again.
        """
        statements: list[BoundStatement] = []
        seen: set[str] = set()
        for record in records:
            state = self._tubes.get(record.tube)
            if record.tube in seen or state is None or state.written:
                continue
            seen.add(record.tube)
            statements.append(
                self._upsert.bind(
                    (
                        record.round,
                        record.district,
                        record.site,
                        state.capacity,
                        state.collector,
                        state.first_bound_ms,
                        record.tube,
                    )
                )
            )
            statements.append(
                self._by_district.bind(
                    (record.round, record.district, record.site, record.tube)
                )
            )
        return statements

    def stats(self) -> dict[str, Any]:
        """Counters for metrics."""
        return {
            "curr_tubes_loaded": len(self._tubes),
            "curr_tubes_unknown": len(self._unknown),
        }


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    # The driver hands back naive datetimes in UTC.
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)
