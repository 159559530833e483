"""The latest readings, refreshed in the background for every open page.

One loop per console process polls the ingest source and samples the host
every ``refresh_s``; pages only read :class:`LiveState`, so ten open browsers
cost the gateway and the store no more than one.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from console.metrics import ConsoleMetrics, HostSample, RayNode, SaturationSampler
from console.metrics import ray_nodes as read_ray_nodes
from console.sources import IngestSnapshot, IngestSource

__all__ = ["LiveState"]

log = structlog.get_logger()


class LiveState:
    """Latest ingest snapshot, host sample and Ray nodes, kept fresh."""

    def __init__(
        self,
        source: IngestSource,
        metrics: ConsoleMetrics,
        *,
        refresh_s: float,
        max_inflight: int,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.refresh_s = refresh_s
        self.max_inflight = max_inflight
        self.ingest: IngestSnapshot | None = None
        self.host: HostSample | None = None
        self.nodes: list[RayNode] | None = None
        self._sampler = SaturationSampler()
        self._task: asyncio.Task[None] | None = None

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
        self.nodes = await asyncio.to_thread(read_ray_nodes)
        self.metrics.update(self.host, self.nodes, self.ingest)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the console alive
                log.warning("refresh_failed", error=str(exc))
            await asyncio.sleep(self.refresh_s)
