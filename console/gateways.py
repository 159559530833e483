"""Every gateway's Operations service, read together and summed.

Several gateway processes may serve one city (``SIEVE_CONSOLE_GATEWAYS``).
Streams, in-flight, backpressure, acked counts, per-site counts and batch
queues are per gateway and are summed; a device seen by two gateways (it
reconnected) is shown once with its latest time; a shard host's own figures
(store latency, errors) are the same whichever gateway relays them and are
taken once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from engine.latency import LatencySummary, merge_snapshots, summarize
from sieve.v1 import operations_pb2, operations_pb2_grpc

__all__ = [
    "DeviceRow",
    "DistrictAcks",
    "GatewayFleet",
    "GatewayView",
    "HostLoad",
    "SiteDevices",
    "SiteRow",
    "store_latency",
]

log = structlog.get_logger()

CALL_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class GatewayView:
    """The gateways' live state, summed over those that answered."""

    open_streams: int
    inflight: int
    backpressure_events: int
    retry_acks: int
    started_at_ms: int
    """The earliest start among the gateways that answered."""
    answered: int = 1
    asked: int = 1


@dataclass(frozen=True, slots=True)
class DistrictAcks:
    """Acked totals of one district, summed over gateways."""

    stored: int = 0
    duplicate: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class SiteRow:
    """One site of a drill-down."""

    site: str
    stored: int
    devices_seen: int
    devices_online: int


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device of a drill-down."""

    device: str
    site: str
    online: bool
    last_seen_ms: int
    registrations: int


@dataclass(frozen=True, slots=True)
class SiteDevices:
    """A district's or site's drill-down, summed over gateways."""

    sites: Sequence[SiteRow]
    devices: Sequence[DeviceRow]
    errors: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class HostLoad:
    """One shard host: gateway queues summed, the host's own figures once."""

    host: int
    pending_records: int
    inflight_batches: int
    batches: int
    records: int
    answered: bool
    pid: int
    store_errors: int
    ocr_queued: int
    store_latency: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Latency snapshot per store profile (see :mod:`engine.latency`)."""

    @property
    def mean_batch_size(self) -> float:
        """Records per batch sent to this host so far."""
        return self.records / self.batches if self.batches else 0.0


class GatewayFleet:
    """Reads every configured gateway's Operations service.

    Args:
        addresses: ``host:port`` of each gateway.
    """

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("at least one gateway address is needed")
        self.addresses = tuple(addresses)
        self._channels = [grpc.insecure_channel(a) for a in self.addresses]
        self._stubs = [
            operations_pb2_grpc.OperationsStub(channel)  # type: ignore[no-untyped-call]
            for channel in self._channels
        ]

    def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            channel.close()

    def ingest(
        self, errors: list[str]
    ) -> tuple[GatewayView | None, dict[str, DistrictAcks]]:
        """Summed live state and per-district acked totals; None if none answered."""
        replies = self._call_all(
            "GetIngestStats", operations_pb2.IngestStatsRequest(minutes=1), errors
        )
        if not replies:
            return None, {}
        acks: dict[str, DistrictAcks] = {}
        for reply in replies:
            for d in reply.districts:
                old = acks.get(d.district, DistrictAcks())
                acks[d.district] = DistrictAcks(
                    stored=old.stored + d.stored,
                    duplicate=old.duplicate + d.duplicate,
                    rejected=old.rejected + d.rejected,
                )
        view = GatewayView(
            open_streams=sum(r.open_streams for r in replies),
            inflight=sum(r.inflight for r in replies),
            backpressure_events=sum(r.backpressure_events for r in replies),
            retry_acks=sum(r.retry_acks for r in replies),
            started_at_ms=min(r.started_at_ms for r in replies),
            answered=len(replies),
            asked=len(self.addresses),
        )
        return view, acks

    def devices(
        self, *, district: str = "", site: str = "", round_no: int = 0
    ) -> SiteDevices:
        """Sites and devices of a district or a site, summed over gateways.

        Raises:
            ValueError: a gateway refused the request (unknown district or
                site); the message is the gateway's.
        """
        errors: list[str] = []
        request = operations_pb2.ListDevicesRequest(
            district=district, site=site, round=round_no
        )
        replies = self._call_all("ListDevices", request, errors, refuse_invalid=True)
        stored: dict[str, int] = {}
        devices: dict[str, DeviceRow] = {}
        for reply in replies:
            for s in reply.sites:
                stored[s.site] = stored.get(s.site, 0) + s.stored
            for d in reply.devices:
                old = devices.get(d.device)
                devices[d.device] = DeviceRow(
                    device=d.device,
                    site=d.site,
                    online=d.online or (old is not None and old.online),
                    last_seen_ms=max(d.last_seen_ms, old.last_seen_ms if old else 0),
                    registrations=d.registrations + (old.registrations if old else 0),
                )
        rows = sorted(devices.values(), key=lambda r: r.device)
        sites = [
            SiteRow(
                site=code,
                stored=count,
                devices_seen=sum(1 for r in rows if r.site == code),
                devices_online=sum(1 for r in rows if r.site == code and r.online),
            )
            for code, count in sorted(stored.items())
        ]
        return SiteDevices(sites=sites, devices=rows, errors=tuple(errors))

    def host_loads(self, errors: list[str]) -> tuple[list[HostLoad], int]:
        """Every shard host's load and the summed in-flight limit."""
        replies = self._call_all(
            "GetSaturation", operations_pb2.SaturationRequest(), errors
        )
        by_host: dict[int, list[operations_pb2.ShardHostLoad]] = {}
        for reply in replies:
            for load in reply.hosts:
                by_host.setdefault(load.host, []).append(load)
        loads = []
        for host, parts in sorted(by_host.items()):
            relayed = next((p for p in parts if p.answered), None)
            latency = {}
            if relayed is not None:
                latency = {
                    h.profile: merge_snapshots(
                        [
                            {
                                "bounds_ms": list(h.bounds_ms),
                                "counts": list(h.counts),
                                "errors": h.errors,
                                "total_ms": h.total_ms,
                            }
                        ]
                    )
                    for h in relayed.store_latency
                }
            loads.append(
                HostLoad(
                    host=host,
                    pending_records=sum(p.pending_records for p in parts),
                    inflight_batches=sum(p.inflight_batches for p in parts),
                    batches=sum(p.batches for p in parts),
                    records=sum(p.records for p in parts),
                    answered=relayed is not None,
                    pid=relayed.pid if relayed else 0,
                    store_errors=relayed.store_errors if relayed else 0,
                    ocr_queued=relayed.ocr_queued if relayed else 0,
                    store_latency=latency,
                )
            )
        return loads, sum(r.max_inflight for r in replies)

    def _call_all(
        self,
        method: str,
        request: Any,
        errors: list[str],
        *,
        refuse_invalid: bool = False,
    ) -> list[Any]:
        replies = []
        for address, stub in zip(self.addresses, self._stubs, strict=True):
            try:
                replies.append(getattr(stub, method)(request, timeout=CALL_TIMEOUT_S))
            except grpc.RpcError as exc:
                code = exc.code()
                if refuse_invalid and code is grpc.StatusCode.INVALID_ARGUMENT:
                    raise ValueError(str(exc.details())) from None
                log.warning("gateway_unreachable", address=address, code=str(code))
                errors.append(f"gateway {address}: {code}")
        return replies


def store_latency(hosts: Sequence[HostLoad]) -> dict[str, LatencySummary]:
    """Store request latency per profile, summed over every shard host."""
    profiles = sorted({name for h in hosts for name in h.store_latency})
    return {
        name: summarize(
            merge_snapshots(
                h.store_latency[name] for h in hosts if name in h.store_latency
            )
        )
        for name in profiles
    }
