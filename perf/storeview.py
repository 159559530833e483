"""The store node's own view during a run: its thread pools, sampled over CQL.

Cassandra 5.0 lists its stages in ``system_views.thread_pools``. Sampling
``MutationStage`` shows whether writes queue for a writer thread (every
thread busy, tasks pending): with ``commitlog_sync: group`` each write holds
its thread until the next commit-log sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cassandra.cluster import Cluster

from engine.config import Settings

__all__ = ["PoolSamples", "StoreView"]

POOLS = ("MutationStage", "ReadStage", "Native-Transport-Requests")


@dataclass
class PoolSamples:
    """Samples of one pool: how often it was full and how deep its queue got."""

    limit: int = 0
    samples: int = 0
    full: int = 0
    pending_max: int = 0
    pending_sum: int = 0

    def add(self, active: int, limit: int, pending: int) -> None:
        """Count one sample."""
        self.limit = limit
        self.samples += 1
        self.full += active >= limit
        self.pending_max = max(self.pending_max, pending)
        self.pending_sum += pending

    def summary(self) -> dict[str, Any]:
        """Share of samples with every thread busy, and the queue depth."""
        count = max(self.samples, 1)
        return {
            "threads": self.limit,
            "samples": self.samples,
            "all_busy_share": self.full / count,
            "pending_mean": self.pending_sum / count,
            "pending_max": self.pending_max,
        }


@dataclass
class StoreView:
    """Samples the store's pools on demand (one driver connection)."""

    settings: Settings
    pools: dict[str, PoolSamples] = field(default_factory=dict)
    _cluster: Any = None
    _session: Any = None

    def sample(self) -> None:
        """Read the pools once; a failed read is skipped."""
        try:
            if self._session is None:
                self._cluster = Cluster(
                    list(self.settings.cql_hosts),
                    port=self.settings.cql_port,
                    protocol_version=4,
                )
                self._session = self._cluster.connect()
            rows = self._session.execute(
                "SELECT name, active_tasks, active_tasks_limit, pending_tasks"
                " FROM system_views.thread_pools",
                timeout=2,
            )
        except Exception:  # noqa: BLE001 - a missed sample is not worth failing for
            return
        for row in rows:
            if row.name in POOLS:
                self.pools.setdefault(row.name, PoolSamples()).add(
                    row.active_tasks, row.active_tasks_limit, row.pending_tasks
                )

    def summary(self) -> dict[str, Any]:
        """Per pool: threads, share of samples all busy, pending tasks."""
        return {name: pool.summary() for name, pool in sorted(self.pools.items())}

    def close(self) -> None:
        """Drop the connection."""
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = self._session = None
