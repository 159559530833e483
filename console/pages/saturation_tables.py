"""Rows of the saturation page's tables, with their threshold levels.

Plain functions from readings to table rows, so the judgement of each number
is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from console.cluster import ClusterView
from console.gateways import HostLoad, store_latency
from console.metrics import HostSample, Level, cpu_level, memory_level
from engine.host_usage import HostUsage

__all__ = [
    "ACTOR_COLUMNS",
    "LATENCY_COLUMNS",
    "NODE_COLUMNS",
    "actor_rows",
    "gpu_text",
    "latency_level",
    "latency_rows",
    "node_rows",
]

NET_AMBER_PERCENT = 70.0
NET_RED_PERCENT = 90.0
LATENCY_AMBER_SHARE = 0.2
LATENCY_RED_SHARE = 0.5


def _columns(*fields: tuple[str, str]) -> list[dict[str, str]]:
    return [
        {"name": name, "label": label, "field": name, "align": "left"}
        for name, label in fields
    ]


NODE_COLUMNS = _columns(
    ("address", "Node"),
    ("alive", "Alive"),
    ("cpus", "CPUs"),
    ("cpu", "CPU now (sustained)"),
    ("memory", "Memory"),
    ("network", "Network (sent / received)"),
    ("gpu", "GPU"),
    ("level", "Level"),
)
ACTOR_COLUMNS = _columns(
    ("actor", "Actor"),
    ("kind", "Kind"),
    ("queue", "Queue"),
    ("inflight", "In-flight batches"),
    ("batch", "Mean batch"),
    ("restarts", "Restarts"),
    ("errors", "Store errors"),
    ("level", "Level"),
)
LATENCY_COLUMNS = _columns(
    ("profile", "Profile"),
    ("requests", "Requests"),
    ("p50", "p50"),
    ("p99", "p99"),
    ("errors", "Errors"),
    ("level", "Level"),
)


def _worst(*levels: Level) -> Level:
    order = [Level.OK, Level.AMBER, Level.RED]
    return max(levels, key=order.index)


def _rate(bytes_per_s: float) -> str:
    if bytes_per_s >= 2**20:
        return f"{bytes_per_s / 2**20:.1f} MiB/s"
    return f"{bytes_per_s / 2**10:.1f} KiB/s"


def gpu_text(usage: HostUsage) -> str:
    """GPUs' utilisation and memory, or "no GPU" where there is none."""
    if not usage.gpus:
        return "no GPU"
    return "; ".join(
        f"GPU{g.index} {g.utilization_percent:.0f}%,"
        f" {g.memory_used_bytes / 2**30:.1f}/{g.memory_total_bytes / 2**30:.0f} GiB"
        for g in usage.gpus
    )


def _node_row(
    address: str, alive: bool, cpus: float, usage: HostUsage
) -> dict[str, Any]:
    net = usage.net_percent
    net_level = (
        Level.OK
        if net is None or net < NET_AMBER_PERCENT
        else Level.RED
        if net >= NET_RED_PERCENT
        else Level.AMBER
    )
    gpu_level = Level.OK
    for gpu in usage.gpus or ():
        share = 100 * gpu.memory_used_bytes / max(gpu.memory_total_bytes, 1)
        gpu_level = _worst(gpu_level, memory_level(share))
    link = "" if net is None else f" ({net:.0f}% of link)"
    return {
        "address": address,
        "alive": "yes" if alive else "NO",
        "cpus": f"{cpus:g}",
        "cpu": f"{usage.cpu_percent:.0f}%"
        f" ({usage.cpu_sustained_percent:.0f}% over 60 s)",
        "memory": f"{usage.memory_percent:.0f}% of"
        f" {usage.memory_total_bytes / 2**30:.1f} GiB",
        "network": f"{_rate(usage.net_sent_bytes_per_s)} /"
        f" {_rate(usage.net_recv_bytes_per_s)}{link}",
        "gpu": gpu_text(usage),
        "level": str(
            _worst(
                Level.OK if alive else Level.RED,
                cpu_level(usage.cpu_sustained_percent, usage.cpu_percent),
                memory_level(usage.memory_percent),
                net_level,
                gpu_level,
            )
        ),
    }


def node_rows(cluster: ClusterView | None, host: HostSample) -> list[dict[str, Any]]:
    """One row per Ray node; this machine alone when Ray is not connected."""
    if cluster is None:
        return [
            {
                "address": f"{host.hostname} (Ray not connected)",
                "alive": "yes",
                "cpus": str(len(host.cpu_per_core)),
                "cpu": f"{host.cpu_total:.0f}%",
                "memory": f"{host.memory_percent:.0f}%",
                "network": "",
                "gpu": "",
                "level": str(_worst(host.cpu_level, host.memory_level)),
            }
        ]
    rows = []
    for node in cluster.nodes:
        if node.usage is None:
            rows.append(
                {
                    "address": node.address,
                    "alive": "yes" if node.alive else "NO",
                    "cpus": f"{node.cpus:g}",
                    "cpu": "not read",
                    "level": str(Level.RED if node.alive else Level.AMBER),
                }
            )
            continue
        rows.append(_node_row(node.address, node.alive, node.cpus, node.usage))
    return rows


def actor_rows(
    hosts: Sequence[HostLoad], cluster: ClusterView | None
) -> list[dict[str, Any]]:
    """Shard hosts, then OCR actors: queues, batches, restarts."""
    restarts = {} if cluster is None else dict(cluster.restarts)
    rows = []
    for load in hosts:
        name = f"shard-host-{load.host}"
        count = restarts.get(name)
        level = Level.RED if not load.answered else Level.OK
        if load.answered and load.pending_records > load.inflight_batches * max(
            load.mean_batch_size, 1
        ):
            level = Level.AMBER
        rows.append(
            {
                "actor": name,
                "kind": "shard host",
                "queue": f"{load.pending_records:,} records",
                "inflight": load.inflight_batches,
                "batch": f"{load.mean_batch_size:.1f}",
                "restarts": "?" if count is None else count,
                "errors": load.store_errors,
                "level": str(level),
            }
        )
    for ocr in [] if cluster is None else cluster.ocr:
        rows.append(
            {
                "actor": ocr.name,
                "kind": "OCR",
                "queue": f"{ocr.queued:,} images",
                "inflight": ocr.inflight_batches,
                "batch": f"{ocr.mean_batch_size:.1f}",
                "restarts": "?" if ocr.restarts is None else ocr.restarts,
                "errors": "",
                "level": str(Level.OK if ocr.answered else Level.RED),
            }
        )
    return rows


def latency_level(p99_ms: float | None, timeout_s: float) -> Level:
    """Judge a p99 against the store timeout it must stay well under."""
    if p99_ms is None:
        return Level.OK
    if p99_ms >= LATENCY_RED_SHARE * timeout_s * 1000:
        return Level.RED
    if p99_ms >= LATENCY_AMBER_SHARE * timeout_s * 1000:
        return Level.AMBER
    return Level.OK


def latency_rows(hosts: Sequence[HostLoad], timeout_s: float) -> list[dict[str, Any]]:
    """Store latency per execution profile, summed over the shard hosts."""
    return [
        {
            "profile": profile,
            "requests": f"{summary.count:,}",
            "p50": "–" if summary.p50_ms is None else f"≤ {summary.p50_ms:g} ms",
            "p99": "–" if summary.p99_ms is None else f"≤ {summary.p99_ms:g} ms",
            "errors": summary.errors,
            "level": str(latency_level(summary.p99_ms, timeout_s)),
        }
        for profile, summary in store_latency(hosts).items()
    ]
