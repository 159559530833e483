"""The OCR Ray actor: a thin shell over CardReader and DynamicBatcher."""

from __future__ import annotations

import os
from typing import Any

import ray
import structlog

from actors.ocr_pool import OcrActorPool, OcrUnavailable, ocr_actor_name
from engine.ocr_batching import DynamicBatcher
from engine.ocr_reader import CardReader, OcrRead
from engine.ocr_verdict import OcrResult, VerifyRequest, judge

__all__ = ["OcrActorPool", "OcrBatchActor", "OcrUnavailable", "start_ocr_actors"]
# OcrActorPool and OcrUnavailable live in actors.ocr_pool (no model imports);
# they are re-exported here for callers that already import the actor.

log = structlog.get_logger()

OCR_ACTOR_GPUS = 0.25
"""GPU share per actor where the cluster has GPUs: the small models use well
under a quarter of one, so four replicas share a device and keep it busy."""
OCR_ACTOR_CPUS = 1.0
"""CPU reservation per actor without a GPU: inference keeps one core busy."""

# TODO: GPU_MAX_BATCH and OCR_ACTOR_GPUS are not measured (no GPU was lent to
# this work); run perf/gpu_ocr.sh on one and set them from its table.
CPU_MAX_BATCH, GPU_MAX_BATCH = 2, 64
"""Default photos per model call. On CPU batching does not pay: one photo's
convolutions already keep a core busy, and larger batches fall out of cache
(measured with one thread: 1.00x at 2, 0.72x at 8, 0.65x at 64 photos per
call). A GPU needs large batches to fill it."""


@ray.remote(max_restarts=-1, max_task_retries=0)
class OcrBatchActor:
    """Holds one CardReader and batches concurrent calls into it.

    Concurrent ``read``/``verify`` calls (it is an async actor) go through a
    DynamicBatcher, which sets the caps and backpressure: a full queue raises
    BatchQueueFull to the caller, which tries another actor (OcrActorPool).
    Ray restarts a killed actor; calls it held fail with RayActorError and the
    pool resends them.

    Args:
        max_batch_size: photos per model call (default by device, see
            CPU_MAX_BATCH and GPU_MAX_BATCH).
        max_queue_delay_ms: longest a photo waits for companions.
        max_queue_size: photos that may wait; beyond, calls raise BatchQueueFull.
        threads: onnxruntime threads (default: the CPUs Ray gave this actor).
    """

    def __init__(
        self,
        max_batch_size: int | None = None,
        max_queue_delay_ms: float = 5.0,
        max_queue_size: int = 512,
        threads: int | None = None,
    ) -> None:
        context: Any = ray.get_runtime_context()
        cpus = context.get_assigned_resources().get("CPU", 1.0)
        self._reader = CardReader(threads=threads or max(1, int(cpus)))
        self._batcher: DynamicBatcher[bytes, OcrRead] = DynamicBatcher(
            self._reader.read_batch,
            max_batch_size=max_batch_size or self._default_batch(),
            max_queue_delay_ms=max_queue_delay_ms,
            max_queue_size=max_queue_size,
            name="ocr",
        )
        log.info("ocr_actor_started", pid=os.getpid(), provider=self._reader.provider)

    def _default_batch(self) -> int:
        on_gpu = self._reader.provider == "CUDAExecutionProvider"
        return GPU_MAX_BATCH if on_gpu else CPU_MAX_BATCH

    async def read(self, image: bytes) -> OcrRead:
        """Read one photo (batched with concurrent calls)."""
        return await self._batcher.submit(image)

    async def verify(self, request: VerifyRequest) -> OcrResult:
        """Read the request's photo and judge it against the sent values."""
        read = await self._batcher.submit(request.image)
        return judge(read, request.name, request.id_number)

    def stats(self) -> dict[str, Any]:
        """The batcher's counters and recent figures, with this process's pid."""
        return self._batcher.stats() | {
            "pid": os.getpid(),
            "provider": self._reader.provider,
        }

    def pid(self) -> int:
        """Process id, for tests and operators that must find the process."""
        return os.getpid()


def start_ocr_actors(
    count: int,
    *,
    num_cpus: float | None = None,
    namespace: str | None = None,
    detached: bool = False,
    **options: Any,
) -> list[Any]:
    """Create ``count`` OCR actors sized for this cluster and wait until they answer.

    Args:
        count: replicas.
        num_cpus: CPU reservation per actor (default OCR_ACTOR_CPUS, or 1
            beside a GPU share).
        namespace: when given, the actors are named (``ocr-<i>``) in it and
            reused if they exist, so shard hosts can find them.
        detached: keep them alive after this process exits (several
            gateway processes sharing one Ray cluster).
        **options: passed to :class:`OcrBatchActor` (batch size, delay, ...).

    Returns:
        Actor handles.
    """
    if ray.cluster_resources().get("GPU", 0) > 0:  # type: ignore[no-untyped-call]
        resources: dict[str, float] = {
            "num_gpus": OCR_ACTOR_GPUS,
            "num_cpus": num_cpus or 1.0,
        }
    else:
        resources = {"num_cpus": num_cpus or OCR_ACTOR_CPUS}
    actor_class: Any = OcrBatchActor
    handles = []
    for index in range(count):
        named: dict[str, Any] = {}
        if namespace is not None:
            named = {
                "name": ocr_actor_name(index),
                "namespace": namespace,
                "get_if_exists": True,
            }
            if detached:
                named["lifetime"] = "detached"
        handles.append(actor_class.options(**resources, **named).remote(**options))
    ray.get([handle.pid.remote() for handle in handles])
    log.info("ocr_actors_ready", actors=count, **resources)
    return handles
