"""Where the console's numbers come from: the gateway and the store.

:class:`IngestSource` is what pages need; :class:`GatewayStoreSource` answers
it from the gateway's Operations service (open streams, in-flight,
backpressure, acked totals since the gateway started) and from the store's
``registrations_by_minute`` table, whose partition sizes are the exact
per-minute counts. Completed minutes are counted once and cached; raw
registrations are never scanned.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import structlog
from cassandra.concurrent import execute_concurrent_with_args

from console.config import ConsoleSettings
from engine.city import City
from engine.config import Settings
from engine.counters import MINUTE_MS, minute_of
from engine.exceptions import IngestError
from engine.store import CqlStore
from sieve.v1 import operations_pb2, operations_pb2_grpc

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
class GatewayView:
    """The gateway's live state, from Operations.GetIngestStats."""

    open_streams: int
    inflight: int
    backpressure_events: int
    retry_acks: int
    started_at_ms: int


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


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    """Everything the ingest views show, taken at one moment."""

    taken_at_ms: int
    round: int
    window_start_ms: int
    districts: Sequence[DistrictView]
    gateway: GatewayView | None
    errors: Sequence[str] = field(default_factory=tuple)

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


@dataclass
class MinuteCountCache:
    """Exact counts of minutes that can no longer change, by district."""

    settle_ms: int
    _counts: dict[tuple[str, int], int] = field(default_factory=dict)

    def get(self, district: str, minute_ms: int) -> int | None:
        """A cached count, or None if it must be (re)read."""
        return self._counts.get((district, minute_ms))

    def put(self, district: str, minute_ms: int, count: int, now_ms: int) -> None:
        """Keep a count if its minute ended more than ``settle_ms`` ago."""
        if minute_ms + MINUTE_MS + self.settle_ms <= now_ms:
            self._counts[(district, minute_ms)] = count

    def __len__(self) -> int:
        return len(self._counts)


# TODO: one gateway address is read; with several gateways the streams,
# in-flight and rejected figures cover only that one. Summing every gateway's
# Operations answer (or reading them from the store) would give the city view.
class GatewayStoreSource:
    """Reads the gateway's Operations service and the store's minute counts.

    Args:
        settings: engine settings (gateway address, store, keyspace).
        console: console settings (round, windows, settle time).
        city: the districts and their expected populations.
    """

    def __init__(self, settings: Settings, console: ConsoleSettings, city: City):
        self._settings = settings
        self._console = console
        self._city = city
        self._channel = grpc.insecure_channel(settings.gateway_address)
        self._ops = operations_pb2_grpc.OperationsStub(  # type: ignore[no-untyped-call]
            self._channel
        )
        self._store = CqlStore(settings)
        self._cache = MinuteCountCache(settle_ms=round(console.settle_s * 1000))
        self._last_gateway_start_ms = 0

    def close(self) -> None:
        """Close the gRPC channel and the store session."""
        self._channel.close()
        self._store.close()

    def snapshot(self) -> IngestSnapshot:
        """Read the gateway, then the store's counts for the window."""
        now_ms = time.time_ns() // 1_000_000
        errors: list[str] = []
        gateway, reply = self._read_gateway(errors)
        start_ms = self._window_start(now_ms, gateway)
        minutes = list(range(minute_of(start_ms), minute_of(now_ms) + 1, MINUTE_MS))
        counts = self._read_counts(minutes, now_ms, errors)
        acked = {d.district: d for d in reply.districts} if reply else {}
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
                )
            )
        return IngestSnapshot(
            taken_at_ms=now_ms,
            round=self._console.round,
            window_start_ms=minute_of(start_ms),
            districts=tuple(districts),
            gateway=gateway,
            errors=tuple(errors),
        )

    def _read_gateway(
        self, errors: list[str]
    ) -> tuple[GatewayView | None, operations_pb2.IngestStatsResponse | None]:
        try:
            reply = self._ops.GetIngestStats(
                operations_pb2.IngestStatsRequest(minutes=1), timeout=3
            )
        except grpc.RpcError as exc:
            log.warning("gateway_unreachable", code=str(exc.code()))
            errors.append(f"gateway {self._settings.gateway_address}: {exc.code()}")
            return None, None
        self._last_gateway_start_ms = reply.started_at_ms
        view = GatewayView(
            open_streams=reply.open_streams,
            inflight=reply.inflight,
            backpressure_events=reply.backpressure_events,
            retry_acks=reply.retry_acks,
            started_at_ms=reply.started_at_ms,
        )
        return view, reply

    def _window_start(self, now_ms: int, gateway: GatewayView | None) -> int:
        console = self._console
        start = console.round_start_ms or (
            gateway.started_at_ms if gateway else self._last_gateway_start_ms
        )
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
