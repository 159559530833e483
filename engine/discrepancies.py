"""Where a round's samples went astray: tubes and boxes whose journeys disagree.

A district's findings come from its partitions only: the tubes it touched
(``tubes_by_district``), its box trips (``box_trips_by_district``) and its lab
receipts (``tube_receipts``); the rows they name (``tubes``, ``box_trips``,
``box_tubes``, ``tube_batches``) are then read by key, many keys per ``IN``
query. Nothing scans a table. :func:`classify` decides the findings from the
facts read, without the store.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from cassandra.concurrent import execute_concurrent_with_args

from engine.barcodes import BarcodeError, parse_tube_code
from engine.store import CqlStore
from engine.tube_allocation import SiteBatches, TubeAllocator

__all__ = [
    "DiscrepancyReader",
    "Finding",
    "Kind",
    "ReceiptFacts",
    "TripFacts",
    "TubeFacts",
    "classify",
]

log = structlog.get_logger()

READ_CHUNK = 100
"""Keys per ``IN`` query."""
CONCURRENCY = 32
"""Reads in flight at once."""

_TUBES = (
    "SELECT site, tube FROM {ks}.tubes_by_district WHERE round = ? AND district = ?"
)
_TRIPS = (
    "SELECT box, trip FROM {ks}.box_trips_by_district WHERE round = ? AND district = ?"
)
_RECEIPTS = (
    "SELECT tube, event_id, box, lab FROM {ks}.tube_receipts"
    " WHERE round = ? AND district = ?"
)
_TUBE_ROWS = (
    "SELECT tube, round, district, site, collector, first_bound_at, sealed_at,"
    " box, box_trip, received_at, received_box, lab FROM {ks}.tubes"
    " WHERE tube IN ?"
)
_TRIP_ROWS = "SELECT box, trip, state, site, lab FROM {ks}.box_trips WHERE box IN ?"
_BOX_TUBES = (
    "SELECT tube, loaded_at, received_at FROM {ks}.box_tubes WHERE box = ? AND trip = ?"
)


class Kind(enum.StrEnum):
    """The kinds of discrepancy, in the order reports list them."""

    SEALED_NOT_BOXED = "SEALED_NOT_BOXED"
    """Sealed by a collector, never scanned into a box."""
    BOXED_NOT_RECEIVED = "BOXED_NOT_RECEIVED"
    """Loaded into a box trip, not received by a lab."""
    RECEIVED_NOT_SEALED = "RECEIVED_NOT_SEALED"
    """Received by a lab although no collector sealed it."""
    RECEIVED_UNKNOWN = "RECEIVED_UNKNOWN"
    """Received by a lab, but never allocated or never bound to anyone."""
    RECEIVED_TWICE = "RECEIVED_TWICE"
    """Two or more lab receipt events for one tube."""
    BOX_SHORT = "BOX_SHORT"
    """On a received trip's manifest, but the lab did not scan it."""
    BOX_EXTRA = "BOX_EXTRA"
    """Scanned out of a box at the lab without having been loaded into it."""


_ORDER = {kind: index for index, kind in enumerate(Kind)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy: what, about which tube, in which box trip if any."""

    kind: Kind
    round: int
    district: str
    site: str
    tube: str
    box: str = ""
    trip: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain fields, for JSON."""
        return {
            "kind": str(self.kind),
            "round": self.round,
            "district": self.district,
            "site": self.site,
            "tube": self.tube,
            "box": self.box,
            "trip": self.trip,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class TubeFacts:
    """The ``tubes`` row of a tube, as far as findings need it."""

    code: str
    bound: bool
    sealed: bool
    box: str = ""
    box_trip: int | None = None
    received: bool = False
    received_box: str = ""
    site: str = ""


@dataclass
class TripFacts:
    """A box trip and its manifest: tube -> (loaded, received at the lab)."""

    box: str
    trip: int
    state: str
    site: str = ""
    lab: str = ""
    tubes: dict[str, tuple[bool, bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    """A tube's lab receipt events."""

    tube: str
    event_ids: frozenset[str]
    boxes: tuple[str, ...] = ()


def classify(
    round_no: int,
    district: str,
    codes: Iterable[str],
    tubes: dict[str, TubeFacts],
    trips: Sequence[TripFacts],
    receipts: dict[str, ReceiptFacts],
    allocated: Callable[[str], bool],
) -> list[Finding]:
    """Every finding of one district's round, sorted by site, kind and tube.

    Args:
        round_no: the round.
        district: the district whose partitions were read.
        codes: every tube the district's partitions named.
        tubes: the ``tubes`` rows found, by code (a code may have none).
        trips: the district's box trips with their manifests.
        receipts: lab receipt events per tube.
        allocated: whether a tube code was ever handed out to a printer.
    """
    findings: list[Finding] = []
    loaded_in: dict[str, TripFacts] = {}
    scanned: set[str] = set()
    for trip in trips:
        for tube, (loaded, received) in trip.tubes.items():
            if loaded:
                loaded_in[tube] = trip
            if received:
                scanned.add(tube)

    def add(
        kind: Kind, tube: str, trip: TripFacts | None = None, detail: str = ""
    ) -> None:
        facts = tubes.get(tube)
        site = (facts.site if facts else "") or _site_of(tube)
        findings.append(
            Finding(
                kind,
                round_no,
                district,
                site,
                tube,
                trip.box if trip else "",
                trip.trip if trip else None,
                detail,
            )
        )

    every = set(codes) | set(receipts) | set(loaded_in) | scanned
    trip_of = {(t.box, t.trip): t for t in trips}
    for code in sorted(every):
        facts = tubes.get(code)
        receipt = receipts.get(code)
        received = bool((facts and facts.received) or receipt or code in scanned)
        boxed = bool((facts and facts.box) or code in loaded_in)
        carrier = loaded_in.get(code)
        if carrier is None and facts and facts.box:
            carrier = trip_of.get((facts.box, facts.box_trip or 0))
        if facts and facts.sealed and not boxed and not received:
            add(Kind.SEALED_NOT_BOXED, code)
        # TODO: there is no age threshold, so a report run while boxes are on
        # the road lists every tube in transit as BOXED_NOT_RECEIVED.
        if boxed and not received:
            state = carrier.state if carrier else "unknown"
            add(Kind.BOXED_NOT_RECEIVED, code, carrier, f"trip state {state}")
        if received:
            if not allocated(code):
                add(Kind.RECEIVED_UNKNOWN, code, detail="never allocated")
            elif facts is None or not facts.bound:
                add(Kind.RECEIVED_UNKNOWN, code, detail="allocated, never bound")
            elif not facts.sealed:
                add(Kind.RECEIVED_NOT_SEALED, code)
        if receipt and len(receipt.event_ids) > 1:
            boxes = ",".join(sorted(set(receipt.boxes)))
            add(
                Kind.RECEIVED_TWICE,
                code,
                detail=f"{len(receipt.event_ids)} receipts, boxes {boxes}",
            )

    for trip in trips:
        for tube, (loaded, received) in sorted(trip.tubes.items()):
            if trip.state == "RECEIVED" and loaded and not received:
                add(Kind.BOX_SHORT, tube, trip, "on the manifest, not scanned")
            if received and not loaded:
                add(Kind.BOX_EXTRA, tube, trip, "scanned, not on the manifest")

    findings.sort(key=lambda f: (f.site, _ORDER[f.kind], f.tube, f.box))
    return findings


class DiscrepancyReader:
    """Reads a district's journey partitions and lists its findings.

    Every read is a partition the round and district name, or rows by key in
    ``IN`` groups of :data:`READ_CHUNK`, at most :data:`CONCURRENCY` in
    flight; a district of ~90,000 tubes is about 1,000 key reads. Reads use
    the ``admin`` profile (quorum, 60 s timeout); a read that fails raises
    the driver's error and the caller may simply run the report again.

    Args:
        store: connected store.
    """

    def __init__(self, store: CqlStore) -> None:
        self._store = store
        self._allocator = TubeAllocator(store)
        self._sites: dict[str, SiteBatches] = {}

    def district(self, round_no: int, district: str) -> list[Finding]:
        """Every finding of one district in a round."""
        key = (round_no, district)
        codes = [row.tube for row in self._partition(_TUBES, key)]
        receipts = self._receipts(key)
        trips = self._trips(key)
        wanted = set(codes) | set(receipts)
        for trip in trips:
            wanted.update(trip.tubes)
        tubes = self._tube_rows(sorted(wanted))
        findings = classify(
            round_no, district, codes, tubes, trips, receipts, self._allocated
        )
        log.info(
            "discrepancies_read",
            round=round_no,
            district=district,
            num_tubes=len(wanted),
            num_trips=len(trips),
            num_findings=len(findings),
        )
        return findings

    def round(self, round_no: int, districts: Iterable[str]) -> list[Finding]:
        """Findings of several districts, district by district."""
        return [f for d in districts for f in self.district(round_no, d)]

    def _partition(self, cql: str, key: tuple[Any, ...]) -> list[Any]:
        statement = self._store.prepare(cql)
        # Iterating the result set fetches every page of the partition.
        return list(
            self._store.session.execute(statement, key, execution_profile="admin")
        )

    def _many(self, cql: str, params: list[tuple[Any, ...]]) -> list[list[Any]]:
        if not params:
            return []
        statement = self._store.prepare(cql)
        results = execute_concurrent_with_args(
            self._store.session,
            statement,
            params,
            concurrency=CONCURRENCY,
            raise_on_first_error=True,
            execution_profile="admin",
        )
        return [list(result.result_or_exc) for result in results]

    def _receipts(self, key: tuple[Any, ...]) -> dict[str, ReceiptFacts]:
        events: dict[str, set[str]] = defaultdict(set)
        boxes: dict[str, list[str]] = defaultdict(list)
        for row in self._partition(_RECEIPTS, key):
            events[row.tube].add(str(row.event_id))
            boxes[row.tube].append(row.box or "")
        return {
            tube: ReceiptFacts(tube, frozenset(ids), tuple(boxes[tube]))
            for tube, ids in events.items()
        }

    def _trips(self, key: tuple[Any, ...]) -> list[TripFacts]:
        wanted = {(row.box, int(row.trip)) for row in self._partition(_TRIPS, key)}
        boxes = sorted({box for box, _ in wanted})
        trips: dict[tuple[str, int], TripFacts] = {}
        for rows in self._many(_TRIP_ROWS, [(chunk,) for chunk in _chunks(boxes)]):
            for row in rows:
                trip_key = (row.box, int(row.trip))
                if trip_key in wanted:
                    trips[trip_key] = TripFacts(
                        row.box,
                        int(row.trip),
                        row.state or "",
                        row.site or "",
                        row.lab or "",
                    )
        ordered = sorted(trips)
        manifests = self._many(_BOX_TUBES, ordered)
        for trip_key, rows in zip(ordered, manifests, strict=True):
            trips[trip_key].tubes = {
                row.tube: (row.loaded_at is not None, row.received_at is not None)
                for row in rows
            }
        return [trips[k] for k in ordered]

    def _tube_rows(self, codes: list[str]) -> dict[str, TubeFacts]:
        found: dict[str, TubeFacts] = {}
        for rows in self._many(_TUBE_ROWS, [(chunk,) for chunk in _chunks(codes)]):
            for row in rows:
                found[row.tube] = TubeFacts(
                    code=row.tube,
                    bound=row.first_bound_at is not None,
                    sealed=row.sealed_at is not None,
                    box=row.box or "",
                    box_trip=row.box_trip,
                    received=row.received_at is not None,
                    received_box=row.received_box or "",
                    site=row.site or "",
                )
        return found

    def _allocated(self, code: str) -> bool:
        try:
            parsed = parse_tube_code(code)
        except BarcodeError:
            return False
        batches = self._sites.get(parsed.site)
        if batches is None or batches.find(parsed.serial) is None:
            # Re-read: a printer may have allocated it since the last read.
            batches = self._allocator.batches(parsed.site)
            self._sites[parsed.site] = batches
        return batches.find(parsed.serial) is not None


def _site_of(code: str) -> str:
    try:
        return parse_tube_code(code).site
    except BarcodeError:
        return ""


def _chunks(items: Sequence[Any]) -> list[list[Any]]:
    return [list(items[i : i + READ_CHUNK]) for i in range(0, len(items), READ_CHUNK)]
