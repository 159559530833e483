"""The latest readings, refreshed in the background for every open page.

One loop per console process polls the ingest source, the gateways' shard
host loads, the Ray cluster, this host and the journey's stage counts and
coverage every ``refresh_s``; pages only
read :class:`LiveState`, so ten open browsers cost the engine no more than
one. Drill-downs into a district are read on demand and kept ``refresh_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from console.cluster import ClusterReader, ClusterView
from console.coverage import CoverageView
from console.gateways import GatewayFleet, HostLoad, SiteDevices
from console.journey import JourneySnapshot
from console.journey_source import JourneySource
from console.metrics import ConsoleMetrics, HostSample, RayNode, SaturationSampler
from console.sources import IngestSnapshot, IngestSource

__all__ = ["LiveState"]

log = structlog.get_logger()


class LiveState:
    """Latest ingest snapshot, host sample, shard hosts and Ray, kept fresh.

    Args:
        source: ingest counts (gateways and store).
        metrics: the Prometheus gauges to keep in step.
        refresh_s: poll period.
        max_inflight: one gateway's in-flight limit (used until the gateways
            report theirs).
        fleet: the gateways, for shard host loads and drill-downs.
        cluster: the Ray reader; None runs without Ray.
        journey: stage counts and coverage; None shows neither.
    """

    def __init__(
        self,
        source: IngestSource,
        metrics: ConsoleMetrics,
        *,
        refresh_s: float,
        max_inflight: int,
        fleet: GatewayFleet | None = None,
        cluster: ClusterReader | None = None,
        journey: JourneySource | None = None,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.refresh_s = refresh_s
        self.max_inflight = max_inflight
        self.fleet = fleet
        self.cluster_reader = cluster
        self.ingest: IngestSnapshot | None = None
        self.host: HostSample | None = None
        self.nodes: list[RayNode] | None = None
        self.cluster: ClusterView | None = None
        self.hosts: list[HostLoad] = []
        self.load_errors: list[str] = []
        self.journey = journey
        self.stages: JourneySnapshot | None = None
        self.coverage: CoverageView | None = None
        self.coverage_error = ""
        self._sampler = SaturationSampler()
        self._task: asyncio.Task[None] | None = None
        self._devices: dict[str, tuple[float, SiteDevices]] = {}

    def start(self) -> None:
        """Begin refreshing on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        """Take one round of readings (blocking reads run in a thread)."""
        self.ingest = await asyncio.to_thread(self.source.snapshot)
        self.host = self._sampler.sample()
        if self.fleet is not None:
            errors: list[str] = []
            hosts, limit = await asyncio.to_thread(self.fleet.host_loads, errors)
            self.hosts, self.load_errors = hosts, errors
            if limit:
                self.max_inflight = limit
        if self.cluster_reader is not None:
            from actors.shard_host import shard_host_name

            names = [shard_host_name(h.host) for h in self.hosts]
            self.cluster = await asyncio.to_thread(self.cluster_reader.read, names)
        self.nodes = (
            None
            if self.cluster is None
            else [
                RayNode(
                    address=n.address,
                    alive=n.alive,
                    cpus=n.cpus,
                    memory_bytes=float(n.usage.memory_total_bytes if n.usage else 0),
                )
                for n in self.cluster.nodes
            ]
        )
        self.metrics.update(self.host, self.nodes, self.ingest)
        self.metrics.update_cluster(self.cluster, self.hosts, self.ingest)
        await self._refresh_journey()

    async def _refresh_journey(self) -> None:
        if self.journey is None or self.ingest is None:
            return
        self.stages = await self.journey.stages(self.ingest.window_start_ms)
        try:
            self.coverage = await self.journey.coverage()
            self.coverage_error = ""
        except Exception as exc:  # noqa: BLE001 - shown, the last view is kept
            log.warning("coverage_unread", error=str(exc))
            self.coverage_error = f"store: {exc}"
        self.metrics.update_journey(self.stages, self.coverage)

    async def devices(self, district: str) -> SiteDevices:
        """Sites and devices of ``district``, at most ``refresh_s`` old.

        Raises:
            ValueError: the gateways do not know the district.
        """
        if self.fleet is None:
            return SiteDevices(sites=(), devices=(), errors=("no gateway",))
        cached = self._devices.get(district)
        if cached is not None and time.monotonic() - cached[0] < self.refresh_s:
            return cached[1]
        fleet = self.fleet
        round_no = self.ingest.round if self.ingest is not None else 0
        result = await asyncio.to_thread(
            lambda: fleet.devices(district=district, round_no=round_no)
        )
        self._devices[district] = (time.monotonic(), result)
        return result

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the console alive
                log.warning("refresh_failed", error=str(exc))
            await asyncio.sleep(self.refresh_s)
