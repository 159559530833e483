"""Where the console's numbers come from: the gateways and the store.

:class:`IngestSource` is what pages need; :class:`GatewayStoreSource` answers
it from every gateway's Operations service (open streams, in-flight,
backpressure, acked totals since each gateway started, summed) and from the
store's ``registrations_by_minute`` table, whose partition sizes are the exact
per-minute counts. Completed minutes are counted once and cached; raw
registrations are never scanned. The round's start and the previous round's
curve come from the ``round_minutes`` index (:mod:`console.rounds`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from cassandra.concurrent import execute_concurrent_with_args

from console.aggregate import city_per_minute, hourly
from console.config import ConsoleSettings
from console.gateways import GatewayFleet, GatewayView
from console.minute_cache import MinuteCountCache
from console.rounds import RoundCurve, RoundMinutes
from engine.city import City
from engine.config import Settings
from engine.counters import MINUTE_MS, minute_of
from engine.exceptions import IngestError
from engine.store import CqlStore

__all__ = [
    "DistrictView",
    "GatewayStoreSource",
    "GatewayView",
    "IngestSnapshot",
    "IngestSource",
    "MinuteCountCache",
]

log = structlog.get_logger()

_COUNT_MINUTE = (
    "SELECT COUNT(*) FROM {ks}.registrations_by_minute"
    " WHERE round = ? AND district = ? AND minute = ?"
)


@dataclass(frozen=True, slots=True)
class DistrictView:
    """One district: exact store counts and the gateway's acked totals."""

    code: str
    name: str
    population: int
    registered: int
    """Registrations stored this round within the counted window (store)."""
    per_minute: Mapping[int, int]
    """Exact stored count per minute of arrival, for the chart window."""
    gateway_stored: int = 0
    duplicate: int = 0
    rejected: int = 0
    hourly: Mapping[int, int] = field(default_factory=dict)
    """Exact stored count per hour (epoch ms of its start) over the window."""


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    """Everything the ingest views show, taken at one moment."""

    taken_at_ms: int
    round: int
    window_start_ms: int
    districts: Sequence[DistrictView]
    gateway: GatewayView | None
    errors: Sequence[str] = field(default_factory=tuple)
    round_start_ms: int | None = None
    """First minute of the round (configured, or its first registrations)."""
    city_per_minute: Mapping[int, int] = field(default_factory=dict)
    """Exact city-wide count per minute over the whole counted window."""
    previous: RoundCurve | None = None
    """The previous round's curve, by minutes since its start."""

    @property
    def registered(self) -> int:
        """Registrations stored across the city within the window."""
        return sum(d.registered for d in self.districts)

    @property
    def population(self) -> int:
        """The city's expected population."""
        return sum(d.population for d in self.districts)


class IngestSource(Protocol):
    """Anything that can say how ingest stands right now."""

    def snapshot(self) -> IngestSnapshot:
        """Take a fresh snapshot (blocking; call it off the event loop)."""
        ...


class GatewayStoreSource:
    """Reads the gateways' Operations services and the store's minute counts.

    Args:
        settings: engine settings (gateway address, store, keyspace).
        console: console settings (round, windows, settle time, gateways).
        city: the districts and their expected populations.
    """

    def __init__(self, settings: Settings, console: ConsoleSettings, city: City):
        self._settings = settings
        self._console = console
        self._city = city
        self.fleet = GatewayFleet(console.gateways or (settings.gateway_address,))
        self._store = CqlStore(settings)
        self._cache = MinuteCountCache(settle_ms=round(console.settle_s * 1000))
        self._rounds = RoundMinutes(self._store, round(console.settle_s * 1000))
        self._round_start_ms: int | None = console.round_start_ms or None
        self._last_gateway_start_ms = 0

    def close(self) -> None:
        """Close the gRPC channels and the store session."""
        self.fleet.close()
        self._store.close()

    def snapshot(self) -> IngestSnapshot:
        """Read the gateways, then the store's counts for the window."""
        now_ms = time.time_ns() // 1_000_000
        errors: list[str] = []
        gateway, acked = self.fleet.ingest(errors)
        if gateway is not None:
            self._last_gateway_start_ms = gateway.started_at_ms
        round_start = self._read_round_start(errors)
        start_ms = self._window_start(now_ms, round_start)
        minutes = list(range(minute_of(start_ms), minute_of(now_ms) + 1, MINUTE_MS))
        counts = self._read_counts(minutes, now_ms, errors)
        chart_from = minute_of(now_ms) - (self._console.chart_minutes - 1) * MINUTE_MS
        districts = []
        for code, district in self._city.districts.items():
            per_minute = counts.get(code, {})
            stats = acked.get(code)
            districts.append(
                DistrictView(
                    code=code,
                    name=district.name,
                    population=district.population,
                    registered=sum(per_minute.values()),
                    per_minute={m: c for m, c in per_minute.items() if m >= chart_from},
                    gateway_stored=stats.stored if stats else 0,
                    duplicate=stats.duplicate if stats else 0,
                    rejected=stats.rejected if stats else 0,
                    hourly=hourly(per_minute),
                )
            )
        return IngestSnapshot(
            taken_at_ms=now_ms,
            round=self._console.round,
            window_start_ms=minute_of(start_ms),
            districts=tuple(districts),
            gateway=gateway,
            errors=tuple(errors),
            round_start_ms=round_start,
            city_per_minute=city_per_minute(counts.values()),
            previous=self._read_previous(now_ms, errors),
        )

    def _read_round_start(self, errors: list[str]) -> int | None:
        # Configured, or the first minute the index lists; once known it
        # cannot move later, so it is not read again.
        if self._round_start_ms is None:
            try:
                self._round_start_ms = self._rounds.first_minute(self._console.round)
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                log.warning("round_start_unread", error=str(exc))
                errors.append(f"store: {exc}")
        return self._round_start_ms

    def _read_previous(self, now_ms: int, errors: list[str]) -> RoundCurve | None:
        previous = self._console.round - 1
        if previous < 1:
            return None
        try:
            return self._rounds.curve(
                previous, self._console.previous_round_start_ms or None, now_ms
            )
        except Exception as exc:  # noqa: BLE001 - shown, not fatal
            log.warning("previous_round_unread", error=str(exc))
            errors.append(f"store: {exc}")
            return None

    def _window_start(self, now_ms: int, round_start: int | None) -> int:
        console = self._console
        start = round_start or self._last_gateway_start_ms
        start = start or now_ms - console.chart_minutes * MINUTE_MS
        earliest_chart = now_ms - (console.chart_minutes - 1) * MINUTE_MS
        earliest = now_ms - console.history_minutes * MINUTE_MS
        return max(min(start, earliest_chart), earliest)

    def _read_counts(
        self, minutes: list[int], now_ms: int, errors: list[str]
    ) -> dict[str, dict[int, int]]:
        result: dict[str, dict[int, int]] = {code: {} for code in self._city.districts}
        missing: list[tuple[str, int]] = []
        for code in self._city.districts:
            for minute in minutes:
                cached = self._cache.get(code, minute)
                if cached is None:
                    missing.append((code, minute))
                elif cached:
                    result[code][minute] = cached
        if not missing:
            return result
        try:
            statement = self._store.prepare(_COUNT_MINUTE)
            answers = execute_concurrent_with_args(
                self._store.session,
                statement,
                [(self._console.round, code, minute) for code, minute in missing],
                concurrency=64,
                raise_on_first_error=True,
            )
        except (IngestError, Exception) as exc:  # noqa: BLE001 - shown, not fatal
            log.warning("store_read_failed", error=str(exc))
            errors.append(f"store: {exc}")
            return result
        for (code, minute), answer in zip(missing, answers, strict=True):
            count = int(answer.result_or_exc.one()[0])
            self._cache.put(code, minute, count, now_ms)
            if count:
                result[code][minute] = count
        return result
