"""Handing out tube barcodes in batches per site, and knowing which exist.

Each site has a serial counter in ``tube_sequences`` advanced with a
compare-and-set, so two printers allocating for one site at once never get
overlapping serials; every batch is recorded in ``tube_batches`` with the
capacity printed on its labels. A tube code is *known* when a batch of its
site covers its serial.
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import structlog

from engine.barcodes import TUBE_SERIAL_LIMIT, make_tube_code
from engine.exceptions import IngestError, StoreError, StoreUnavailable
from engine.store import CqlStore

__all__ = [
    "CAPACITIES",
    "MAX_BATCH",
    "AllocationError",
    "SiteBatches",
    "TubeAllocator",
    "TubeBatch",
]

log = structlog.get_logger()

CAPACITIES = (1, 10, 20)
"""Tube sizes: single samples, 10-in-1 and 20-in-1 pools."""

MAX_BATCH = 10_000
"""Most tubes one allocation may hand out."""

_CAS_ATTEMPTS = 20


class AllocationError(IngestError):
    """An allocation request that cannot be served as asked."""


class TubeBatch(NamedTuple):
    """Serials ``first_serial`` .. ``first_serial + size - 1`` of one site."""

    site: str
    first_serial: int
    size: int
    capacity: int
    printer: str
    allocated_at_ms: int

    def codes(self) -> list[str]:
        """Every barcode of the batch, in serial order."""
        return [
            make_tube_code(self.site, serial)
            for serial in range(self.first_serial, self.first_serial + self.size)
        ]

    def covers(self, serial: int) -> bool:
        """Whether the serial belongs to this batch."""
        return self.first_serial <= serial < self.first_serial + self.size


class SiteBatches:
    """A site's batches, sorted, answering "which batch holds serial n"."""

    def __init__(self, batches: list[TubeBatch]) -> None:
        self._batches = sorted(batches, key=lambda b: b.first_serial)
        self._starts = [b.first_serial for b in self._batches]

    def find(self, serial: int) -> TubeBatch | None:
        """The batch holding the serial, or None if it was never handed out."""
        position = bisect.bisect_right(self._starts, serial) - 1
        if position < 0:
            return None
        batch = self._batches[position]
        return batch if batch.covers(serial) else None

    def __len__(self) -> int:
        return len(self._batches)


class TubeAllocator:
    """Allocates tube serials for sites and reads back what was allocated.

    Args:
        store: a connected store.
    """

    def __init__(self, store: CqlStore) -> None:
        self._store = store

    def allocate(self, site: str, count: int, capacity: int, printer: str) -> TubeBatch:
        """Reserve ``count`` new serials for a site and record the batch.

        Raises:
            AllocationError: count or capacity out of range, or the site's
                serials are used up.
            StoreUnavailable: the store did not answer; nothing was handed out
                that a retry could duplicate (at worst serials are skipped).
        """
        if not 1 <= count <= MAX_BATCH:
            raise AllocationError(f"count must be 1..{MAX_BATCH}", count=count)
        if capacity not in CAPACITIES:
            raise AllocationError(
                "capacity must be one of 1, 10, 20", capacity=capacity
            )
        make_tube_code(site, 0)  # refuses a site id that cannot be encoded
        first = self._reserve(site, count)
        batch = TubeBatch(
            site, first, count, capacity, printer, time.time_ns() // 1_000_000
        )
        self._store.execute_sync(
            "INSERT INTO {ks}.tube_batches (site, first_serial, count, capacity,"
            " printer, allocated_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (site, first, count, capacity, printer, batch.allocated_at_ms),
        )
        log.info(
            "tubes_allocated",
            site=site,
            first_serial=first,
            count=count,
            capacity=capacity,
            printer=printer,
        )
        return batch

    def _reserve(self, site: str, count: int) -> int:
        # A compare-and-set that times out has an unknown outcome. Trying
        # again is safe: if the first one did apply, its serials are skipped
        # (a gap in the labels), never handed out twice.
        delay_s = 0.05
        for _ in range(_CAS_ATTEMPTS):
            try:
                first = self._try_reserve(site, count)
            except (StoreError, StoreUnavailable) as exc:
                log.warning("tube_serial_retry", site=site, error=str(exc)[:200])
                first = None
            if first is not None:
                return first
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
        raise StoreUnavailable("tube serial counter stayed contended", site=site)

    def _try_reserve(self, site: str, count: int) -> int | None:
        rows = self._store.execute_sync(
            "SELECT next_serial FROM {ks}.tube_sequences WHERE site = %s", (site,)
        )
        if not rows:
            self._store.execute_sync(
                "INSERT INTO {ks}.tube_sequences (site, next_serial) VALUES (%s, 0)"
                " IF NOT EXISTS",
                (site,),
            )
            return None
        current = int(rows[0].next_serial)
        if current + count > TUBE_SERIAL_LIMIT:
            raise AllocationError(
                "site has no tube serials left", site=site, next_serial=current
            )
        applied = self._store.execute_sync(
            "UPDATE {ks}.tube_sequences SET next_serial = %s WHERE site = %s"
            " IF next_serial = %s",
            (current + count, site, current),
        )
        return current if applied and applied[0].applied else None

    def batches(self, site: str) -> SiteBatches:
        """Every batch allocated for a site."""
        rows = self._store.execute_sync(
            "SELECT site, first_serial, count, capacity, printer, allocated_at"
            " FROM {ks}.tube_batches WHERE site = %s",
            (site,),
        )
        return SiteBatches([_batch(row) for row in rows])

    async def batches_async(self, site: str) -> SiteBatches:
        """:meth:`batches` without blocking the event loop (shard path)."""
        statement = self._store.prepare(
            "SELECT site, first_serial, count, capacity, printer, allocated_at"
            " FROM {ks}.tube_batches WHERE site = ?"
        )
        rows = await self._store.execute(statement, (site,), profile="ingest")
        return SiteBatches([_batch(row) for row in rows])


def _batch(row: Sequence[Any]) -> TubeBatch:
    # Positional: ``count`` is also a tuple method on the driver's row type.
    site, first_serial, count, capacity, printer, allocated = row
    return TubeBatch(
        site=str(site),
        first_serial=int(first_serial),
        size=int(count),
        capacity=int(capacity),
        printer=str(printer or ""),
        allocated_at_ms=0
        if allocated is None
        else int(allocated.replace(tzinfo=dt.UTC).timestamp() * 1000),
    )
