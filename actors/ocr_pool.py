"""The pool that spreads OCR requests over the named OCR actors, and finds them.

Kept apart from the actor class so processes that only call OCR (shard hosts)
do not import onnxruntime and OpenCV.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any

import ray
import structlog
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from engine.exceptions import BackpressureError, IngestError
from engine.ocr_batching import BatchQueueFull
from engine.ocr_verdict import OcrResult, VerifyRequest

if TYPE_CHECKING:
    from engine.ocr_reader import OcrRead

__all__ = ["OcrActorPool", "OcrUnavailable", "find_ocr_actors", "ocr_actor_name"]

log = structlog.get_logger()

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0


class OcrUnavailable(IngestError):
    """No OCR actor answered in time, or the actor failed on the request."""


def ocr_actor_name(index: int) -> str:
    """Ray actor name of OCR actor ``index``, shared by gateways and shards."""
    return f"ocr-{index}"


def find_ocr_actors(count: int, namespace: str) -> list[Any]:
    """Handles of the named OCR actors another process created."""
    return [ray.get_actor(ocr_actor_name(i), namespace=namespace) for i in range(count)]


# TODO: the pool balances only its own in-flight calls; several gateway
# processes each see part of the load. Balancing on the actors' own queue
# lengths (stats()) would spread a shared cluster better.
class OcrActorPool:
    """Spreads OCR requests over actors and retries those whose actor died.

    Algorithm: each request goes to the actor with the fewest requests in
    flight from this pool (ties in turn). A call whose actor died or is
    restarting (Ray restarts it: ``max_restarts=-1``) is sent again, to the
    next actor, with the same request, so a kill in mid-batch loses nothing;
    reads have no side effects, so a repeat is harmless. An actor whose queue
    is full is skipped the same way; when every actor is full the caller gets
    BackpressureError.

    Timeouts: each request has ``call_timeout_s`` in all, retries included;
    then OcrUnavailable is raised, as it is when the actor itself raised (a
    bug, not a death); the caller leaves the record unverified and retries
    later.

    Args:
        actors: handles from :func:`start_ocr_actors`.
        call_timeout_s: longest one request may take, retries included.
    """

    def __init__(self, actors: list[Any], call_timeout_s: float = 60.0) -> None:
        if not actors:
            raise ValueError("an OCR pool needs at least one actor")
        self._actors = list(actors)
        self._inflight = [0] * len(actors)
        self._turn = itertools.count()
        self._timeout_s = call_timeout_s
        self.num_retries = 0

    async def verify(self, request: VerifyRequest) -> OcrResult:
        """Judge one record; see the class notes for retries and timeouts."""
        result: OcrResult = await self._call("verify", request)
        return result

    async def read(self, image: bytes) -> OcrRead:
        """Read one photo; see the class notes for retries and timeouts."""
        result: OcrRead = await self._call("read", image)
        return result

    def _pick(self, exclude: set[int]) -> int:
        turn = next(self._turn)
        order = [(i + turn) % len(self._actors) for i in range(len(self._actors))]
        live = [i for i in order if i not in exclude] or order
        return min(live, key=lambda i: self._inflight[i])

    async def _call(self, method: str, payload: Any) -> Any:
        deadline = time.monotonic() + self._timeout_s
        delay_s = _RETRY_FIRST_S
        full: set[int] = set()
        died: set[int] = set()
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise OcrUnavailable("no OCR actor answered in time", method=method)
            index = self._pick(full | died)
            self._inflight[index] += 1
            try:
                ref = getattr(self._actors[index], method).remote(payload)
                return await asyncio.wait_for(ref, timeout=remaining_s)
            except RayTaskError as exc:
                if not isinstance(exc.cause, BatchQueueFull):
                    raise OcrUnavailable(
                        "OCR actor failed on the request",
                        method=method,
                        error=type(exc.cause).__name__,
                    ) from exc
                full.add(index)
                if len(full) == len(self._actors):
                    raise BackpressureError(
                        "every OCR actor is full",
                        retry_after_ms=exc.cause.retry_after_ms,
                    ) from None
                continue
            except (RayActorError, ActorUnavailableError) as exc:
                self.num_retries += 1
                died.add(index)
                log.warning(
                    "ocr_call_retry",
                    actor=index,
                    method=method,
                    error=type(exc).__name__,
                    retry_in_ms=int(delay_s * 1000),
                )
            except TimeoutError:
                raise OcrUnavailable(
                    "no OCR actor answered in time", method=method
                ) from None
            finally:
                self._inflight[index] -= 1
            await asyncio.sleep(min(delay_s, max(deadline - time.monotonic(), 0)))
            delay_s = min(delay_s * 2, _RETRY_MAX_S)
