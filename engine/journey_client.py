"""The device side of the Journey API: calls with credentials, resent until final.

Printers, collectors, transporters and lab scanners all talk to the gateway
the same way: unary calls carrying ``x-sieve-device`` and a bearer token.
:class:`JourneyClient` makes those calls and resends what the gateway
answered ``TRY_AGAIN`` (after its ``retry_after_ms``) or what a lost
connection left unanswered, with the same event id, so a resend can never
record a step twice. :func:`upload_results` sends a lab's checked rows in
chunks and sums the answers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog

from engine.results_csv import ResultRow
from sieve.v1 import journey_pb2, journey_pb2_grpc

__all__ = [
    "JourneyClient",
    "UploadSummary",
    "new_event_id",
    "upload_results",
]

log = structlog.get_logger()

RESULT_CHUNK = 500
"""Results per UploadResults call (the gateway takes up to 2,000)."""
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0

Reply = TypeVar("Reply")


def new_event_id() -> str:
    """A fresh event id, as a device makes one per step."""
    return str(uuid.uuid4())


@dataclass
class UploadSummary:
    """What the gateway answered for every result sent."""

    done: int = 0
    already_done: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Refusals per reason name."""
    refused_tubes: list[tuple[str, str, str]] = field(default_factory=list)
    """(tube, reason, message) of every refusal."""
    not_answered: int = 0
    """Still ``TRY_AGAIN`` after every attempt; send the file again later."""

    @property
    def sent(self) -> int:
        """Results with an answer of any kind."""
        return (
            self.done
            + self.already_done
            + sum(self.refused.values())
            + self.not_answered
        )


class JourneyClient:
    """One device's Journey calls over an open channel.

    Each call is resent while the gateway answers ``TRY_AGAIN`` or the
    connection fails with a passing status (UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED), at most ``attempts`` times, waiting the gateway's
    hint or a doubling backoff from 0.1 s up to 2 s. Other gRPC errors
    (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT) are raised at once.

    Args:
        channel: an open ``grpc.aio`` channel to a gateway.
        device_id: the device's id, e.g. ``LAB01-L00``.
        token: its bearer token.
        attempts: tries per call.
        timeout_s: deadline of one try.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        device_id: str,
        token: str,
        *,
        attempts: int = 8,
        timeout_s: float = 30.0,
    ) -> None:
        self.device_id = device_id
        make_stub: Any = journey_pb2_grpc.JourneyStub
        self._stub: Any = make_stub(channel)
        self._metadata = (
            ("x-sieve-device", device_id),
            ("authorization", f"Bearer {token}"),
        )
        self._attempts = attempts
        self._timeout_s = timeout_s

    async def allocate(
        self, count: int, capacity: int
    ) -> journey_pb2.AllocateTubesReply:
        """Allocate tube codes for this printer's site."""
        request = journey_pb2.AllocateTubesRequest(count=count, capacity=capacity)
        return await self._call(
            lambda: self._stub.AllocateTubes(request, **self._opts()),
            lambda r: r.reply.retry_after_ms if _again(r.reply) else None,
        )

    async def seal(
        self, tube: str, collector: str, sealed_at_ms: int, event_id: str = ""
    ) -> journey_pb2.StepReply:
        """Seal a filled tube."""
        request = journey_pb2.SealTubeRequest(
            event_id=event_id or new_event_id(),
            tube_barcode=tube,
            collector_id=collector,
            sealed_at_ms=sealed_at_ms,
        )
        return await self._step(lambda: self._stub.SealTube(request, **self._opts()))

    async def open_box(
        self, box: str, round_no: int, site: str, event_id: str = ""
    ) -> journey_pb2.StepReply:
        """Start a trip of a box from a site."""
        request = journey_pb2.OpenBoxRequest(
            event_id=event_id or new_event_id(),
            box_barcode=box,
            round=round_no,
            site_id=site,
        )
        return await self._step(lambda: self._stub.OpenBox(request, **self._opts()))

    async def load(
        self, box: str, tubes: Sequence[str], event_id: str = ""
    ) -> journey_pb2.StepsReply:
        """Scan sealed tubes into an open box."""
        request = journey_pb2.LoadTubesRequest(
            event_id=event_id or new_event_id(), box_barcode=box, tube_barcodes=tubes
        )
        return await self._steps(lambda: self._stub.LoadTubes(request, **self._opts()))

    async def dispatch(
        self, box: str, vehicle: str, lab: str, event_id: str = ""
    ) -> journey_pb2.StepReply:
        """Sign for a box and leave for a lab."""
        request = journey_pb2.DispatchBoxRequest(
            event_id=event_id or new_event_id(),
            box_barcode=box,
            vehicle=vehicle,
            lab=lab,
        )
        return await self._step(lambda: self._stub.DispatchBox(request, **self._opts()))

    async def receive(
        self, box: str, tubes: Sequence[str], event_id: str = ""
    ) -> journey_pb2.StepsReply:
        """Scan a box on arrival at the lab and every tube taken out of it."""
        request = journey_pb2.ReceiveBoxRequest(
            event_id=event_id or new_event_id(), box_barcode=box, tube_barcodes=tubes
        )
        return await self._steps(lambda: self._stub.ReceiveBox(request, **self._opts()))

    async def results(
        self, items: Sequence[journey_pb2.ResultItem]
    ) -> list[journey_pb2.StepReply]:
        """Upload results; items answered ``TRY_AGAIN`` are sent again alone.

        Returns:
            One final answer per item, in order (``TRY_AGAIN`` where every
            attempt was answered so).
        """
        answers: list[journey_pb2.StepReply | None] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in range(self._attempts):
            request = journey_pb2.UploadResultsRequest(results=[items[i] for i in todo])

            def send(
                sent: journey_pb2.UploadResultsRequest = request,
            ) -> Awaitable[journey_pb2.StepsReply]:
                reply: Awaitable[journey_pb2.StepsReply]
                reply = self._stub.UploadResults(sent, **self._opts())
                return reply

            reply = await self._call(send, lambda _: None)
            wait_ms = 0
            again = []
            for index, answer in zip(todo, reply.items, strict=True):
                answers[index] = answer
                if _again(answer):
                    again.append(index)
                    wait_ms = max(wait_ms, answer.retry_after_ms)
            todo = again
            if not todo or attempt == self._attempts - 1:
                break
            await asyncio.sleep(_wait_s(wait_ms, attempt))
        return [
            a or journey_pb2.StepReply(status=journey_pb2.TRY_AGAIN) for a in answers
        ]

    async def tube(self, code: str) -> journey_pb2.TubeView:
        """A tube's stages and times."""
        query = journey_pb2.TubeQuery(tube_barcode=code)
        return await self._call(
            lambda: self._stub.GetTube(query, **self._opts()), lambda _: None
        )

    def _opts(self) -> dict[str, Any]:
        return {"metadata": self._metadata, "timeout": self._timeout_s}

    async def _step(
        self, send: Callable[[], Awaitable[journey_pb2.StepReply]]
    ) -> journey_pb2.StepReply:
        return await self._call(send, lambda r: r.retry_after_ms if _again(r) else None)

    async def _steps(
        self, send: Callable[[], Awaitable[journey_pb2.StepsReply]]
    ) -> journey_pb2.StepsReply:
        # The same request again (same event id): items already recorded
        # answer ALREADY_DONE, so an item's first DONE is kept.
        best: journey_pb2.StepsReply | None = None

        def again(reply: journey_pb2.StepsReply) -> int | None:
            nonlocal best
            best = reply if best is None else _merge(best, reply)
            waits = [a.retry_after_ms for a in (reply.reply, *reply.items) if _again(a)]
            return max(waits) if waits else None

        last = await self._call(send, again)
        return best if best is not None else last

    async def _call(
        self, send: Callable[[], Awaitable[Reply]], again: Callable[[Reply], int | None]
    ) -> Reply:
        attempt = 0
        while True:
            try:
                reply = await send()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSIENT_CODES or attempt >= self._attempts - 1:
                    raise
                log.warning(
                    "journey_call_retry",
                    device=self.device_id,
                    code=exc.code().name,
                    attempt=attempt,
                )
                await asyncio.sleep(_wait_s(0, attempt))
                attempt += 1
                continue
            wait_ms = again(reply)
            if wait_ms is None or attempt >= self._attempts - 1:
                return reply
            await asyncio.sleep(_wait_s(wait_ms, attempt))
            attempt += 1


async def upload_results(
    client: JourneyClient, rows: Sequence[ResultRow], *, chunk: int = RESULT_CHUNK
) -> UploadSummary:
    """Send checked result rows in chunks and sum the gateway's answers."""
    summary = UploadSummary()
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        items = [
            journey_pb2.ResultItem(
                tube_barcode=row.tube,
                result=row.result.name,
                tested_at_ms=row.tested_at_ms,
            )
            for row in part
        ]
        answers = await client.results(items)
        for row, answer in zip(part, answers, strict=True):
            if answer.status == journey_pb2.DONE:
                summary.done += 1
            elif answer.status == journey_pb2.ALREADY_DONE:
                summary.already_done += 1
            elif answer.status == journey_pb2.REFUSED:
                reason = journey_pb2.StepReason.Name(answer.reason).removeprefix(
                    "STEP_"
                )
                summary.refused[reason] += 1
                summary.refused_tubes.append((row.tube, reason, answer.message))
            else:
                summary.not_answered += 1
    log.info(
        "results_uploaded",
        device=client.device_id,
        num_done=summary.done,
        num_already_done=summary.already_done,
        num_refused=sum(summary.refused.values()),
        num_not_answered=summary.not_answered,
    )
    return summary


def _again(reply: journey_pb2.StepReply) -> bool:
    return bool(reply.status == journey_pb2.TRY_AGAIN)


def _merge(
    first: journey_pb2.StepsReply, later: journey_pb2.StepsReply
) -> journey_pb2.StepsReply:
    def pick(
        a: journey_pb2.StepReply, b: journey_pb2.StepReply
    ) -> journey_pb2.StepReply:
        return a if a.status in (journey_pb2.DONE, journey_pb2.REFUSED) else b

    if len(first.items) != len(later.items):
        return later
    return journey_pb2.StepsReply(
        reply=pick(first.reply, later.reply),
        items=[pick(a, b) for a, b in zip(first.items, later.items, strict=True)],
    )


def _wait_s(hint_ms: int, attempt: int) -> float:
    if hint_ms:
        return float(hint_ms) / 1000
    return float(min(_FIRST_BACKOFF_S * 2**attempt, _MAX_BACKOFF_S))
