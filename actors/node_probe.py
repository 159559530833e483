"""A Ray actor pinned to one node that reports that node's usage.

A thin shell around :class:`~engine.host_usage.HostUsageSampler`: the console
places one probe on every alive node (no CPU reserved) and asks each for a
reading on every refresh.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.host_usage import HostUsage, HostUsageSampler

__all__ = ["NodeProbeActor", "node_probe_name", "start_node_probe"]


def node_probe_name(node_id: str) -> str:
    """Ray actor name of the probe on node ``node_id``."""
    return f"node-probe-{node_id}"


@ray.remote(num_cpus=0, max_restarts=-1)
class NodeProbeActor:
    """Samples the machine it runs on."""

    def __init__(self) -> None:
        self._sampler = HostUsageSampler()

    def sample(self) -> HostUsage:
        """One reading of this node (CPU and network since the last call)."""
        return self._sampler.sample()


def start_node_probe(node_id: str, namespace: str) -> Any:
    """The probe of ``node_id``, created there if it does not run yet."""
    actor_class: Any = NodeProbeActor
    return actor_class.options(
        name=node_probe_name(node_id),
        namespace=namespace,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote()
