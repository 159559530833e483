"""The saturation page's judgements: nodes, GPUs, actors and store latency."""

from __future__ import annotations

from console.cluster import ClusterView, NodeView
from console.gateways import HostLoad
from console.metrics import Level
from console.pages.saturation_tables import (
    actor_rows,
    gpu_text,
    latency_level,
    latency_rows,
    node_rows,
)
from engine.host_usage import GpuUsage, HostUsage, HostUsageSampler
from engine.latency import LatencyHistogram


def _usage(
    cpu: float, sustained: float, gpus: tuple[GpuUsage, ...] | None
) -> HostUsage:
    return HostUsage(
        hostname="n1",
        taken_at_s=0.0,
        cpu_percent=cpu,
        cpu_per_core=(cpu,),
        cpu_sustained_percent=sustained,
        memory_percent=10.0,
        memory_used_bytes=1,
        memory_total_bytes=2**30,
        net_sent_bytes_per_s=0.0,
        net_recv_bytes_per_s=0.0,
        net_link_bytes_per_s=None,
        gpus=gpus,
    )


def _cluster(usage: HostUsage | None) -> ClusterView:
    return ClusterView(nodes=[NodeView("a" * 40, "10.0.0.1", True, 4.0, usage)])


def test_machine_without_gpu_says_so() -> None:
    """No NVML: the panel says "no GPU" and reports no numbers for it."""
    assert "no GPU" == gpu_text(_usage(10, 10, None))
    assert "no GPU" == gpu_text(_usage(10, 10, ()))
    sample = HostUsageSampler().sample()
    assert sample.gpus is None or all(g.memory_total_bytes for g in sample.gpus)


def test_gpu_memory_near_full_is_red() -> None:
    """A GPU at 95% of its memory turns the node red."""
    gpu = GpuUsage(0, "H200", 50.0, 95 * 2**30, 100 * 2**30)
    cluster = _cluster(_usage(10, 10, (gpu,)))
    [row] = node_rows(cluster, host=None)  # type: ignore[arg-type]
    assert "GPU0 50%" in row["gpu"]
    assert str(Level.RED) == row["level"]


def test_node_cpu_is_red_only_when_sustained() -> None:
    """A spike to 97% is amber; a minute at 90% is red."""
    spiking, sustained = _cluster(_usage(97, 40, None)), _cluster(_usage(90, 90, None))
    [spike] = node_rows(spiking, host=None)  # type: ignore[arg-type]
    [busy] = node_rows(sustained, host=None)  # type: ignore[arg-type]
    assert (str(Level.AMBER), str(Level.RED)) == (spike["level"], busy["level"])


def test_unread_node_is_flagged() -> None:
    """An alive node whose probe did not answer is red, not silently fine."""
    [row] = node_rows(_cluster(None), host=None)  # type: ignore[arg-type]
    assert ("not read", str(Level.RED)) == (row["cpu"], row["level"])


def test_store_p99_is_judged_against_the_write_timeout() -> None:
    """p99 at half the timeout is red, at a fifth amber, well under ok."""
    assert Level.OK == latency_level(None, 2.0)
    assert Level.OK == latency_level(64.0, 2.0)
    assert Level.AMBER == latency_level(512.0, 2.0)
    assert Level.RED == latency_level(1024.0, 2.0)


def test_latency_rows_sum_every_host() -> None:
    """Two hosts' ingest histograms make one row with both counts."""
    first, second = LatencyHistogram(), LatencyHistogram()
    first.record(3.0)
    second.record_error(3.0)
    hosts = [
        HostLoad(i, 0, 0, 1, 3, True, 1, 0, 0, {"ingest": h.snapshot()})
        for i, h in enumerate((first, second))
    ]
    [row] = latency_rows(hosts, 2.0)
    assert ("ingest", "2", 1, "≤ 4 ms") == (
        row["profile"],
        row["requests"],
        row["errors"],
        row["p99"],
    )


def test_silent_shard_host_is_red_and_restarts_are_shown() -> None:
    """A host that did not answer is red; Ray's restart count is in its row."""
    hosts = [HostLoad(0, 5, 1, 10, 30, False, 0, 0, 0)]
    view = ClusterView(nodes=[], restarts={"shard-host-0": 2})
    [row] = actor_rows(hosts, view)
    assert ("shard-host-0", 2, str(Level.RED)) == (
        row["actor"],
        row["restarts"],
        row["level"],
    )
