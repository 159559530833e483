"""The store reads behind the journey views: stage counts, coverage and tubes.

All reads run on one event loop in a worker thread of their own, so a long
first read of a round's minutes never stalls the pages. Stage counts come
from :class:`~engine.stage_counts.StageCounter` (named partitions of
``stage_by_minute`` and ``registrations_by_minute`` only); minutes that are
settled are kept in a :class:`~console.journey.StageMinuteCache`, and each
refresh reads, per district, only from its earliest minute not kept up to
now. Coverage is re-read every ``coverage_s``; a tube on demand.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from console.coverage import CoverageReader, CoverageView
from console.journey import JourneySnapshot, StageMinuteCache, StageTotals
from engine.barcodes import BarcodeError, parse_tube_code
from engine.city import City
from engine.config import Settings
from engine.counters import MINUTE_MS, minute_of
from engine.journey_service import read_tube
from engine.pii import Keyring, PiiCipher
from engine.stage_counts import MAX_MINUTES, StageCounter
from engine.store import CqlStore
from sieve.v1 import journey_pb2

__all__ = ["JourneySource", "TubeAnswer"]

log = structlog.get_logger()

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TubeAnswer:
    """What the tube page shows for one search."""

    code: str
    error: str = ""
    """Why the code is not a tube barcode; empty when it is one."""
    view: journey_pb2.TubeView | None = None
    """The tube from the store (``known`` false: no such tube)."""


class JourneySource:
    """Reads stage counts, coverage and single tubes for the console.

    Args:
        settings: engine settings (store, keyspace, keys file).
        city: districts, for the rows and the coverage fallback.
        round_no: the round shown.
        settle_s: a minute's counts are kept once it ended this long ago.
        recheck_s: kept minutes are read again after this long.
        coverage_s: how often coverage is re-read.
    """

    def __init__(
        self,
        settings: Settings,
        city: City,
        *,
        round_no: int,
        settle_s: float,
        recheck_s: float,
        coverage_s: float,
    ) -> None:
        self._settings = settings
        self._city = city
        self.round = round_no
        self._store = CqlStore(settings)
        self._cache = StageMinuteCache(
            settle_ms=round(settle_s * 1000), recheck_ms=round(recheck_s * 1000)
        )
        self._coverage_ms = round(coverage_s * 1000)
        self._coverage: CoverageView | None = None
        self._counter: StageCounter | None = None
        self._coverage_reader: CoverageReader | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="console-journey", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the worker loop and close the store session."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._store.close()

    async def stages(self, window_start_ms: int) -> JourneySnapshot:
        """Every district's stage totals from ``window_start_ms`` to now."""
        return await self._run(self._stages(window_start_ms))

    async def coverage(self) -> CoverageView | None:
        """Coverage, re-read when ``coverage_s`` old; None until first read.

        Raises:
            StoreUnavailable: the read failed (the last view is kept).
        """
        now_ms = time.time_ns() // 1_000_000
        kept = self._coverage
        if kept is None or now_ms - kept.taken_at_ms >= self._coverage_ms:
            self._coverage = await self._run(self._read_coverage(now_ms))
        return self._coverage

    async def tube(self, raw: str) -> TubeAnswer:
        """A scanned or typed code checked, then the tube read from the store."""
        try:
            code = parse_tube_code(raw).code
        except BarcodeError as exc:
            return TubeAnswer(code=raw.strip(), error=str(exc))
        view = await self._run(self._read_tube(code))
        return TubeAnswer(code=code, view=view)

    async def _run(self, work: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            work, self._loop
        )
        return await asyncio.wrap_future(future)

    def _ready(self) -> StageCounter:
        # Connecting blocks; it runs on the worker loop, never the pages'.
        if self._counter is None:
            self._store.connect()
            self._counter = StageCounter(self._store)
        return self._counter

    async def _read_tube(self, code: str) -> journey_pb2.TubeView:
        self._ready()
        return await read_tube(self._store, code)

    async def _read_coverage(self, now_ms: int) -> CoverageView:
        self._ready()
        if self._coverage_reader is None:
            cipher = PiiCipher(Keyring.load(self._settings.keys_file))
            self._coverage_reader = CoverageReader(self._store, cipher, self._city)
        return await self._coverage_reader.read(self.round, now_ms)

    async def _stages(self, window_start_ms: int) -> JourneySnapshot:
        counter = self._ready()
        now_ms = time.time_ns() // 1_000_000
        first = max(
            minute_of(window_start_ms),
            minute_of(now_ms) - (MAX_MINUTES - 1) * MINUTE_MS,
        )
        minutes = list(range(first, minute_of(now_ms) + 1, MINUTE_MS))
        # TODO: a seal or lab result stamped into a minute already kept shows
        # up only at the next recheck, and a recheck reads the whole window
        # again (six reads per district and minute), as nothing tells which
        # past minutes gained rows.
        to_read = {
            code: start
            for code in self._city.districts
            if (start := self._cache.first_missing(code, minutes, now_ms)) is not None
        }
        errors: list[str] = []
        read: dict[str, list[Any]] = {}
        if to_read:
            try:
                found = await asyncio.gather(
                    *(
                        counter.district(self.round, code, start, now_ms)
                        for code, start in to_read.items()
                    )
                )
                read = {c.district: c.minutes for c in found}
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                log.warning("stage_counts_unread", error=str(exc))
                errors.append(f"store: {exc}")
        totals: dict[str, StageTotals] = {}
        for code in self._city.districts:
            fresh = {m.minute_ms: m for m in read.get(code, ())}
            for counts in fresh.values():
                self._cache.put(code, counts, now_ms)
            kept = [
                fresh.get(minute) or self._cache.get(code, minute, now_ms)
                for minute in minutes
            ]
            totals[code] = StageTotals.from_minutes(m for m in kept if m is not None)
        return JourneySnapshot(
            taken_at_ms=now_ms,
            round=self.round,
            window_start_ms=first,
            districts=totals,
            errors=tuple(errors),
        )
