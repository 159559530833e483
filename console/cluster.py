"""The Ray cluster as the saturation page sees it: nodes, their usage, actors.

Read through this console's own Ray connection (``SIEVE_RAY_ADDRESS``): one
:class:`~actors.node_probe.NodeProbeActor` per alive node samples its CPU,
memory, network and GPUs; actor restarts come from Ray's actor table; the OCR
actors report their own batch figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.host_usage import HostUsage

__all__ = ["ClusterReader", "ClusterView", "NodeView", "OcrActorView"]

log = structlog.get_logger()

PROBE_TIMEOUT_S = 3.0
"""How long a reading waits for probes and actors; late ones show as unread."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """A Ray node and, when its probe answered, its usage."""

    node_id: str
    address: str
    alive: bool
    cpus: float
    usage: HostUsage | None


@dataclass(frozen=True, slots=True)
class OcrActorView:
    """One OCR actor's batcher figures and restarts."""

    name: str
    restarts: int | None
    queued: int
    inflight_batches: int
    mean_batch_size: float
    answered: bool


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Everything read from Ray in one refresh."""

    nodes: Sequence[NodeView]
    restarts: Mapping[str, int | None] = field(default_factory=dict)
    """Restarts by actor name (None: the actor is not known to Ray)."""
    ocr: Sequence[OcrActorView] = ()


class ClusterReader:
    """Reads nodes, probes and actors; None from :meth:`read` without Ray.

    Args:
        namespace: the engine's Ray namespace (where its actors are named).
        ocr_actors: how many OCR actors the engine runs.
    """

    def __init__(self, namespace: str, ocr_actors: int) -> None:
        self._namespace = namespace
        self._ocr_actors = ocr_actors
        self._probes: dict[str, Any] = {}

    def read(self, actor_names: Sequence[str]) -> ClusterView | None:
        """One reading; ``actor_names`` are the shard hosts to report on."""
        import ray

        if not ray.is_initialized():
            return None
        raw_nodes = ray.nodes()  # type: ignore[no-untyped-call]
        usage = self._sample(
            [str(n["NodeID"]) for n in raw_nodes if n.get("Alive", False)]
        )
        nodes = [
            NodeView(
                node_id=str(n["NodeID"]),
                address=str(n.get("NodeManagerAddress", "?")),
                alive=bool(n.get("Alive", False)),
                cpus=float(n.get("Resources", {}).get("CPU", 0.0)),
                usage=usage.get(str(n["NodeID"])),
            )
            for n in raw_nodes
        ]
        from actors.ocr_pool import ocr_actor_name

        ocr_names = [ocr_actor_name(i) for i in range(self._ocr_actors)]
        restarts = {name: _restarts(name, self._namespace) for name in actor_names}
        ocr = [
            self._ocr_view(name, _restarts(name, self._namespace)) for name in ocr_names
        ]
        return ClusterView(nodes=nodes, restarts=restarts, ocr=ocr)

    def _sample(self, node_ids: Sequence[str]) -> dict[str, HostUsage]:
        import ray

        from actors.node_probe import start_node_probe

        refs = {}
        for node_id in node_ids:
            probe = self._probes.get(node_id)
            if probe is None:
                probe = self._probes[node_id] = start_node_probe(
                    node_id, self._namespace
                )
            refs[node_id] = probe.sample.remote()
        ready, _ = ray.wait(
            list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S
        )
        done = set(ready)
        result: dict[str, HostUsage] = {}
        for node_id, ref in refs.items():
            if ref not in done:
                continue
            try:
                result[node_id] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                log.warning("node_probe_failed", node=node_id, error=type(exc).__name__)
                self._probes.pop(node_id, None)
        return result

    def _ocr_view(self, name: str, restarts: int | None) -> OcrActorView:
        import ray

        try:
            handle = ray.get_actor(name, namespace=self._namespace)
            handle_any: Any = handle
            stats: dict[str, Any] = ray.get(
                handle_any.stats.remote(), timeout=PROBE_TIMEOUT_S
            )
        except (ValueError, ray.exceptions.RayError) as exc:
            log.warning("ocr_stats_unread", actor=name, error=type(exc).__name__)
            return OcrActorView(name, restarts, 0, 0, 0.0, answered=False)
        return OcrActorView(
            name=name,
            restarts=restarts,
            queued=int(stats.get("queued", 0)),
            inflight_batches=int(stats.get("inflight_batches", 0)),
            mean_batch_size=float(stats.get("mean_batch_size", 0.0)),
            answered=True,
        )


def _restarts(name: str, namespace: str) -> int | None:
    """How often Ray restarted the named actor, or None if it is unknown."""
    import ray

    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None
    # TODO: Ray's public state API (ray.util.state) needs the dashboard,
    # which production and test clusters run without, so the GCS actor table
    # is read through a private module; a Ray upgrade may move it, and then
    # restarts show as unknown ("?") until this is adapted.
    from ray._private.state import state

    try:
        entry = state.actor_table(handle._actor_id.hex())
    except Exception as exc:  # noqa: BLE001 - a private API may change
        log.warning("actor_table_unread", actor=name, error=type(exc).__name__)
        return None
    return int(entry.get("NumRestarts", 0)) if entry else None
