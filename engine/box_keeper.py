"""Transport boxes as their owning shard sees them: trips, states, manifests.

A box code is routed to one shard (by the code, within the box's district),
so that shard alone opens, loads, dispatches and receives its trips and can
refuse a second transporter opening a box that is still on the road. The
latest trip of each box is cached, loaded from ``box_trips`` and
``box_tubes`` the first time the box is seen.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from engine.store import CqlStore

__all__ = ["BoxKeeper", "Trip", "TripState"]


class TripState:
    """States of a trip, in order."""

    OPEN = "OPEN"
    IN_TRANSIT = "IN_TRANSIT"
    RECEIVED = "RECEIVED"


@dataclass(slots=True)
class Trip:
    """One use of a box, from opening at a site to receipt at a lab."""

    box: str
    trip: int
    round: int
    district: str
    site: str
    state: str
    opened_event: bytes | None = None
    dispatched_event: bytes | None = None
    received_event: bytes | None = None
    lab: str = ""
    manifest: set[str] = field(default_factory=set)

    @property
    def in_use(self) -> bool:
        """Whether the box is still out (not yet received by a lab)."""
        return self.state != TripState.RECEIVED


_SELECT_TRIP = (
    "SELECT box, trip, round, district, site, state, opened_event,"
    " dispatched_event, received_event, lab FROM {ks}.box_trips"
    " WHERE box = ? LIMIT 1"
)
_SELECT_MANIFEST = "SELECT tube FROM {ks}.box_tubes WHERE box = ? AND trip = ?"


class BoxKeeper:
    """Latest trip of every box a shard host owns, loaded on demand.

    Args:
        store: connected store.
        max_boxes: trips kept in memory; older ones are reloaded when needed.
    """

    def __init__(self, store: CqlStore, *, max_boxes: int = 100_000) -> None:
        self._store = store
        self._trips: OrderedDict[str, Trip | None] = OrderedDict()
        self._max_boxes = max_boxes
        self._select_trip = store.prepare(_SELECT_TRIP)
        self._select_manifest = store.prepare(_SELECT_MANIFEST)

    async def latest(self, box: str) -> Trip | None:
        """The box's latest trip, or None if it never left a site.

        Raises:
            StoreUnavailable: the store did not answer.
        """
        if box in self._trips:
            self._trips.move_to_end(box)
            return self._trips[box]
        rows = await self._store.execute(self._select_trip, (box,), profile="ingest")
        trip = None
        if rows:
            row = rows[0]
            trip = Trip(
                box=row.box,
                trip=row.trip,
                round=row.round,
                district=row.district,
                site=row.site,
                state=row.state,
                opened_event=_bytes(row.opened_event),
                dispatched_event=_bytes(row.dispatched_event),
                received_event=_bytes(row.received_event),
                lab=row.lab or "",
            )
            manifest = await self._store.execute(
                self._select_manifest, (box, trip.trip), profile="ingest"
            )
            trip.manifest = {r.tube for r in manifest}
        # A concurrent step may have loaded or changed it meanwhile.
        current = self._trips.setdefault(box, trip)
        while len(self._trips) > self._max_boxes:
            self._trips.popitem(last=False)
        return current

    def put(self, trip: Trip) -> None:
        """Record a trip's new state after its write succeeded."""
        self._trips[trip.box] = trip
        self._trips.move_to_end(trip.box)

    def forget(self, box: str) -> None:
        """Drop a cached trip whose write failed; it is reloaded next time."""
        self._trips.pop(box, None)

    def stats(self) -> dict[str, Any]:
        """Counters for metrics."""
        return {"curr_boxes_loaded": len(self._trips)}


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value.bytes)


def to_ms(value: dt.datetime | None) -> int | None:
    """Epoch milliseconds of a driver timestamp (naive UTC), or None."""
    if value is None:
        return None
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)
