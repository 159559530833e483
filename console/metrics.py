"""Saturation: this host's CPU and memory, Ray nodes, gateway pressure.

:class:`SaturationSampler` takes psutil samples and judges them against
thresholds that mean something (CPU is red only when at or above 85% for a
sustained minute, not for a spike). :class:`ConsoleMetrics` exposes the same
numbers as Prometheus gauges for ``/metrics``.
"""

from __future__ import annotations

import enum
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import psutil
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from console.cluster import ClusterView
from console.coverage import CoverageView
from console.gateways import HostLoad, store_latency
from console.journey import COLUMNS, WAITS, JourneySnapshot
from console.sources import IngestSnapshot

__all__ = [
    "ConsoleMetrics",
    "HostSample",
    "Level",
    "RayNode",
    "SaturationSampler",
    "cpu_level",
    "memory_level",
    "ray_nodes",
]

CPU_RED_PERCENT = 85.0
CPU_AMBER_PERCENT = 70.0
SUSTAINED_S = 60.0
MEMORY_RED_PERCENT = 90.0
MEMORY_AMBER_PERCENT = 80.0


class Level(enum.StrEnum):
    """How worried to be about a number."""

    OK = "ok"
    AMBER = "amber"
    RED = "red"


@dataclass(frozen=True, slots=True)
class HostSample:
    """One psutil reading of this machine."""

    taken_at_s: float
    hostname: str
    cpu_total: float
    cpu_per_core: Sequence[float]
    cpu_sustained: float
    """Mean total CPU over the last ``SUSTAINED_S`` seconds of samples."""
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int

    @property
    def cpu_level(self) -> Level:
        """Red at a sustained 85%; amber from 70% (or a spike to 85%)."""
        return cpu_level(self.cpu_sustained, self.cpu_total)

    @property
    def memory_level(self) -> Level:
        """Red from 90% used, amber from 80%."""
        return memory_level(self.memory_percent)


@dataclass(frozen=True, slots=True)
class RayNode:
    """A Ray node as ``ray.nodes()`` describes it."""

    address: str
    alive: bool
    cpus: float
    memory_bytes: float


def cpu_level(sustained: float, current: float) -> Level:
    """Judge CPU: only a sustained load is red; a spike is amber."""
    if sustained >= CPU_RED_PERCENT:
        return Level.RED
    if sustained >= CPU_AMBER_PERCENT or current >= CPU_RED_PERCENT:
        return Level.AMBER
    return Level.OK


def memory_level(percent: float) -> Level:
    """Judge memory use in percent of the machine's memory."""
    if percent >= MEMORY_RED_PERCENT:
        return Level.RED
    if percent >= MEMORY_AMBER_PERCENT:
        return Level.AMBER
    return Level.OK


class SaturationSampler:
    """Samples this machine; keeps a minute of totals to judge 'sustained'."""

    def __init__(self) -> None:
        self._history: deque[tuple[float, float]] = deque()
        psutil.cpu_percent(percpu=True)  # first call primes the counters

    def sample(self) -> HostSample:
        """CPU since the previous call, per core and total; memory now."""
        now = time.monotonic()
        per_core = psutil.cpu_percent(percpu=True)
        total = sum(per_core) / len(per_core) if per_core else 0.0
        self._history.append((now, total))
        while self._history and self._history[0][0] < now - SUSTAINED_S:
            self._history.popleft()
        sustained = sum(v for _, v in self._history) / len(self._history)
        memory = psutil.virtual_memory()
        return HostSample(
            taken_at_s=time.time(),
            hostname=socket.gethostname(),
            cpu_total=total,
            cpu_per_core=tuple(per_core),
            cpu_sustained=sustained,
            memory_percent=memory.percent,
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
        )


def ray_nodes() -> list[RayNode] | None:
    """The Ray cluster's nodes if this process is connected, else None."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is an engine dependency
        return None
    if not ray.is_initialized():
        return None
    return [
        RayNode(
            address=str(node.get("NodeManagerAddress", "?")),
            alive=bool(node.get("Alive", False)),
            cpus=float(node.get("Resources", {}).get("CPU", 0.0)),
            memory_bytes=float(node.get("Resources", {}).get("memory", 0.0)),
        )
        for node in ray.nodes()  # type: ignore[no-untyped-call]
    ]


class ConsoleMetrics:
    """Prometheus gauges mirroring the saturation and ingest views."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cpu_core = Gauge(
            "sieve_console_host_cpu_core_percent", "CPU per core", ["core"], registry=r
        )
        self.cpu_total = Gauge(
            "sieve_console_host_cpu_percent", "CPU, all cores", registry=r
        )
        self.cpu_sustained = Gauge(
            "sieve_console_host_cpu_sustained_percent",
            "CPU, all cores, mean of the last minute",
            registry=r,
        )
        self.memory_percent = Gauge(
            "sieve_console_host_memory_percent", "Memory used", registry=r
        )
        self.memory_used = Gauge(
            "sieve_console_host_memory_used_bytes", "Memory used", registry=r
        )
        self.ray_nodes_alive = Gauge(
            "sieve_console_ray_nodes_alive", "Ray nodes alive (-1: none)", registry=r
        )
        self.open_streams = Gauge(
            "sieve_gateway_open_streams", "Device streams open", registry=r
        )
        self.inflight = Gauge(
            "sieve_gateway_inflight_records", "Registrations unacked", registry=r
        )
        self.backpressure = Gauge(
            "sieve_gateway_backpressure_events",
            "Streams pushed back since the gateway started",
            registry=r,
        )
        self.gateway_up = Gauge(
            "sieve_gateway_up", "1 if the gateway answered", registry=r
        )
        self.gateways_answered = Gauge(
            "sieve_gateways_answered", "Gateways whose Operations answered", registry=r
        )
        self.host_pending = Gauge(
            "sieve_shard_host_pending_records",
            "Registrations handed to the host's batchers, unanswered (all gateways)",
            ["host"],
            registry=r,
        )
        self.host_inflight = Gauge(
            "sieve_shard_host_inflight_batches",
            "Batches sent to the host, unanswered (all gateways)",
            ["host"],
            registry=r,
        )
        self.host_batch = Gauge(
            "sieve_shard_host_mean_batch_records",
            "Records per batch sent to the host",
            ["host"],
            registry=r,
        )
        self.host_store_errors = Gauge(
            "sieve_shard_host_store_errors",
            "Store write failures the host retried or gave up on",
            ["host"],
            registry=r,
        )
        self.host_answered = Gauge(
            "sieve_shard_host_up", "1 if the host answered", ["host"], registry=r
        )
        self.actor_restarts = Gauge(
            "sieve_actor_restarts", "Restarts of a Ray actor", ["actor"], registry=r
        )
        self.ocr_queued = Gauge(
            "sieve_ocr_actor_queued",
            "Images waiting in an OCR actor",
            ["actor"],
            registry=r,
        )
        self.store_latency = Gauge(
            "sieve_store_latency_ms",
            "Store request latency quantile, all shard hosts (bucket upper bound)",
            ["profile", "quantile"],
            registry=r,
        )
        self.store_requests = Gauge(
            "sieve_store_requests", "Store requests timed", ["profile"], registry=r
        )
        self.store_errors = Gauge(
            "sieve_store_request_errors",
            "Store requests failed",
            ["profile"],
            registry=r,
        )
        self.node_cpu = Gauge(
            "sieve_ray_node_cpu_percent", "CPU of a Ray node", ["node"], registry=r
        )
        self.node_memory = Gauge(
            "sieve_ray_node_memory_percent",
            "Memory of a Ray node",
            ["node"],
            registry=r,
        )
        self.node_net = Gauge(
            "sieve_ray_node_network_bytes_per_second",
            "Network traffic of a Ray node",
            ["node", "direction"],
            registry=r,
        )
        self.node_gpus = Gauge(
            "sieve_ray_node_gpus",
            "NVIDIA GPUs seen on a Ray node",
            ["node"],
            registry=r,
        )
        self.gpu_util = Gauge(
            "sieve_ray_node_gpu_utilization_percent",
            "GPU utilisation",
            ["node", "gpu"],
            registry=r,
        )
        self.gpu_memory = Gauge(
            "sieve_ray_node_gpu_memory_used_bytes",
            "GPU memory used",
            ["node", "gpu"],
            registry=r,
        )
        self.registered = Gauge(
            "sieve_round_registered",
            "Registrations stored this round (store counts)",
            ["district"],
            registry=r,
        )
        self.stage = Gauge(
            "sieve_journey_stage_tubes",
            "Registrations (stage=registered) or tubes per journey stage this"
            " round (store counts)",
            ["district", "stage"],
            registry=r,
        )
        self.stage_wait = Gauge(
            "sieve_journey_stage_mean_wait_ms",
            "Mean time tubes spent in the stage before this one",
            ["district", "stage"],
            registry=r,
        )
        self.sampled = Gauge(
            "sieve_coverage_sampled",
            "Distinct people sampled this round (participation bitmaps)",
            ["district"],
            registry=r,
        )
        self.expected = Gauge(
            "sieve_coverage_expected",
            "Expected population (registry, else the city file)",
            ["district"],
            registry=r,
        )

    def update_journey(
        self, stages: JourneySnapshot | None, coverage: CoverageView | None
    ) -> None:
        """Set the journey stage and coverage gauges."""
        if stages is not None:
            for district, totals in stages.districts.items():
                for column in (*COLUMNS, "dispatched"):
                    self.stage.labels(district=district, stage=column).set(
                        totals.count(column)
                    )
                for stage, _ in WAITS:
                    mean = totals.mean_wait_ms(stage)
                    if mean is not None:
                        self.stage_wait.labels(district=district, stage=stage).set(mean)
        if coverage is not None:
            for district, count in coverage.sampled.items():
                self.sampled.labels(district=district).set(count)
            for district, count in coverage.expected.items():
                self.expected.labels(district=district).set(count)

    def update(
        self,
        host: HostSample,
        nodes: list[RayNode] | None,
        ingest: IngestSnapshot | None,
    ) -> None:
        """Set every gauge from the latest samples."""
        for index, value in enumerate(host.cpu_per_core):
            self.cpu_core.labels(core=str(index)).set(value)
        self.cpu_total.set(host.cpu_total)
        self.cpu_sustained.set(host.cpu_sustained)
        self.memory_percent.set(host.memory_percent)
        self.memory_used.set(host.memory_used_bytes)
        self.ray_nodes_alive.set(
            -1 if nodes is None else sum(1 for n in nodes if n.alive)
        )
        if ingest is None:
            return
        gateway = ingest.gateway
        self.gateway_up.set(0 if gateway is None else 1)
        if gateway is not None:
            self.open_streams.set(gateway.open_streams)
            self.inflight.set(gateway.inflight)
            self.backpressure.set(gateway.backpressure_events)
        for district in ingest.districts:
            self.registered.labels(district=district.code).set(district.registered)

    def update_cluster(
        self,
        cluster: ClusterView | None,
        hosts: Sequence[HostLoad],
        ingest: IngestSnapshot | None,
    ) -> None:
        """Set the Ray node, actor, store latency and gateway-count gauges."""
        if ingest is not None and ingest.gateway is not None:
            self.gateways_answered.set(ingest.gateway.answered)
        elif ingest is not None:
            self.gateways_answered.set(0)
        for load in hosts:
            host = str(load.host)
            self.host_pending.labels(host=host).set(load.pending_records)
            self.host_inflight.labels(host=host).set(load.inflight_batches)
            self.host_batch.labels(host=host).set(load.mean_batch_size)
            self.host_store_errors.labels(host=host).set(load.store_errors)
            self.host_answered.labels(host=host).set(1 if load.answered else 0)
        for profile, summary in store_latency(hosts).items():
            self.store_requests.labels(profile=profile).set(summary.count)
            self.store_errors.labels(profile=profile).set(summary.errors)
            for quantile, value in (("0.5", summary.p50_ms), ("0.99", summary.p99_ms)):
                if value is not None:
                    self.store_latency.labels(profile=profile, quantile=quantile).set(
                        value
                    )
        if cluster is None:
            return
        for name, restarts in cluster.restarts.items():
            if restarts is not None:
                self.actor_restarts.labels(actor=name).set(restarts)
        for ocr in cluster.ocr:
            if ocr.restarts is not None:
                self.actor_restarts.labels(actor=ocr.name).set(ocr.restarts)
            self.ocr_queued.labels(actor=ocr.name).set(ocr.queued)
        for node in cluster.nodes:
            usage = node.usage
            if usage is None:
                continue
            label = node.address + "/" + node.node_id[:8]
            self.node_cpu.labels(node=label).set(usage.cpu_percent)
            self.node_memory.labels(node=label).set(usage.memory_percent)
            self.node_net.labels(node=label, direction="sent").set(
                usage.net_sent_bytes_per_s
            )
            self.node_net.labels(node=label, direction="received").set(
                usage.net_recv_bytes_per_s
            )
            self.node_gpus.labels(node=label).set(len(usage.gpus or ()))
            for gpu in usage.gpus or ():
                self.gpu_util.labels(node=label, gpu=str(gpu.index)).set(
                    gpu.utilization_percent
                )
                self.gpu_memory.labels(node=label, gpu=str(gpu.index)).set(
                    gpu.memory_used_bytes
                )

    def exposition(self) -> bytes:
        """The Prometheus text format of every gauge."""
        return generate_latest(self.registry)
