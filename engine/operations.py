"""Answers of the Operations service beyond ingest counts: devices and load.

Transport-free builders of the ``sieve.v1.Operations`` replies that
:mod:`engine.grpc_server` serves: the device and site drill-down from the
gateway's :class:`~engine.presence.DevicePresence`, and the shard hosts' load
as this gateway sees it (its batch queues) joined with what each host reports
(store latency and errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from engine.gateway import IngestGateway
from engine.presence import DevicePresence
from sieve.v1 import operations_pb2

__all__ = ["HostStatsReader", "list_devices", "saturation"]

HostStatsReader = Callable[[], Awaitable[Sequence[Sequence[Mapping[str, Any]] | None]]]
"""Reads every shard host's ``stats()`` list, by host index; None for a host
that did not answer in time."""


def list_devices(
    gateway: IngestGateway, request: operations_pb2.ListDevicesRequest
) -> operations_pb2.ListDevicesResponse:
    """The devices and site counts of one district or one site.

    Raises:
        ValueError: neither or both of district and site given, or an unknown
            one (the message names it).
    """
    city = gateway.city
    if bool(request.district) == bool(request.site):
        raise ValueError("name exactly one of district or site")
    if request.site:
        if request.site not in city.sites:
            raise ValueError(f"unknown site {request.site!r}")
        sites = [request.site]
    else:
        if request.district not in city.districts:
            raise ValueError(f"unknown district {request.district!r}")
        sites = [s.id for s in city.sites.values() if s.district == request.district]

    presence: DevicePresence = gateway.presence
    reply = operations_pb2.ListDevicesResponse(
        started_at_ms=gateway.stats.started_at_ms,
        tracked_devices=len(presence),
        max_tracked_devices=presence.max_devices,
    )
    for site in sites:
        reply.sites.append(
            operations_pb2.SiteCount(
                site=site,
                district=city.sites[site].district,
                stored=presence.site_stored(site, request.round),
            )
        )
    for device, seen in presence.devices(frozenset(sites)):
        reply.devices.append(
            operations_pb2.DeviceStatus(
                device=device,
                site=seen.site,
                online=seen.online,
                last_seen_ms=seen.last_seen_ms,
                registrations=seen.num_stored,
            )
        )
    return reply


async def saturation(
    gateway: IngestGateway, host_stats: HostStatsReader | None
) -> operations_pb2.SaturationResponse:
    """Per shard host: this gateway's queue to it and the host's own figures."""
    reported: Sequence[Sequence[Mapping[str, Any]] | None] = (
        await host_stats() if host_stats is not None else ()
    )
    reply = operations_pb2.SaturationResponse(
        max_inflight=gateway.settings.max_inflight_records,
        started_at_ms=gateway.stats.started_at_ms,
    )
    for batcher in gateway.batchers():
        host = int(batcher.target)
        load = operations_pb2.ShardHostLoad(
            host=host,
            pending_records=batcher.curr_waiting,
            inflight_batches=batcher.curr_inflight_batches,
            batches=batcher.num_batches,
            records=batcher.num_records,
        )
        entries = reported[host] if host < len(reported) else None
        if entries is not None:
            _add_host_figures(load, entries)
        reply.hosts.append(load)
    return reply


def _add_host_figures(
    load: operations_pb2.ShardHostLoad, entries: Sequence[Mapping[str, Any]]
) -> None:
    load.answered = True
    for entry in entries:
        load.store_errors += int(entry.get("num_store_errors", 0))
        load.ocr_queued += int(entry.get("ocr_curr_queued", 0))
        if "pid" in entry:
            load.pid = int(entry["pid"])
        for profile, snap in sorted(entry.get("store_latency", {}).items()):
            load.store_latency.append(
                operations_pb2.LatencyHistogram(
                    profile=profile,
                    bounds_ms=snap["bounds_ms"],
                    counts=snap["counts"],
                    errors=snap["errors"],
                    total_ms=snap["total_ms"],
                )
            )
