"""The Journey gRPC service: requests in, checked steps out, replies back.

Each call authenticates the device from its metadata (as the ingest stream
does), refuses a role that may not make the call with PERMISSION_DENIED, and
hands the rest to :class:`~engine.journey_gateway.JourneyGateway`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import structlog

from engine.auth import AuthenticatedDevice, DeviceAuthenticator
from engine.box_keeper import to_ms
from engine.exceptions import AuthenticationError
from engine.journey import StepAnswer
from engine.journey_gateway import JourneyGateway, RoleError
from engine.store import CqlStore
from engine.tube_allocation import TubeBatch
from sieve.v1 import journey_pb2, journey_pb2_grpc

__all__ = ["JOURNEY_SERVICE", "JourneyServicer"]

log = structlog.get_logger()

JOURNEY_SERVICE = journey_pb2.DESCRIPTOR.services_by_name["Journey"].full_name

_STAGES = (
    ("tested_at", "TESTED"),
    ("received_at", "RECEIVED"),
    ("dispatched_at", "IN_TRANSIT"),
    ("boxed_at", "BOXED"),
    ("sealed_at", "SEALED"),
    ("first_bound_at", "BINDING"),
)


def to_reply(answer: StepAnswer, retry_after_ms: int = 0) -> journey_pb2.StepReply:
    """A shard's answer as the device reads it."""
    reply = journey_pb2.StepReply(
        status=int(answer.status),  # type: ignore[arg-type]
        code=answer.code,
        message=answer.message,
    )
    if answer.reason is not None:
        reply.reason = int(answer.reason)  # type: ignore[assignment]
    if answer.status == 4:
        reply.retry_after_ms = retry_after_ms
    return reply


class JourneyServicer(journey_pb2_grpc.JourneyServicer):
    """Serves ``sieve.v1.Journey``.

    Args:
        gateway: checks and routes steps.
        authenticator: device credentials.
        store: read side for GetTube.
    """

    def __init__(
        self,
        gateway: JourneyGateway,
        authenticator: DeviceAuthenticator,
        store: CqlStore,
    ) -> None:
        self._gateway = gateway
        self._auth = authenticator
        self._store = store

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register on a server."""
        add = journey_pb2_grpc.add_JourneyServicer_to_server
        add(self, server)  # type: ignore[no-untyped-call]

    async def _device(
        self, call: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AuthenticatedDevice:
        metadata = dict(context.invocation_metadata() or ())
        device_id = str(metadata.get("x-sieve-device", ""))
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            device = self._auth.authenticate(device_id, token)
        except AuthenticationError as exc:
            log.info("device_refused", device=device_id, call=call)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            raise  # abort raises; this line only satisfies the type checker
        try:
            self._gateway.check_role(call, device)
        except RoleError as exc:
            log.info("device_refused", device=device_id, call=call, cause="role")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        return device

    def _steps(self, answers: Sequence[StepAnswer]) -> journey_pb2.StepsReply:
        wait = self._gateway.retry_after_ms
        return journey_pb2.StepsReply(
            reply=to_reply(answers[0], wait),
            items=[to_reply(a, wait) for a in answers[1:]],
        )

    async def AllocateTubes(  # noqa: N802 - name fixed by the proto
        self, request: journey_pb2.AllocateTubesRequest, context: Any
    ) -> journey_pb2.AllocateTubesReply:
        device = await self._device("AllocateTubes", context)
        batch = await self._gateway.allocate(device, request.count, request.capacity)
        if not isinstance(batch, TubeBatch):
            return journey_pb2.AllocateTubesReply(
                reply=to_reply(batch, self._gateway.retry_after_ms)
            )
        return journey_pb2.AllocateTubesReply(
            reply=journey_pb2.StepReply(status=journey_pb2.DONE, code=batch.site),
            site=batch.site,
            first_serial=batch.first_serial,
            count=batch.size,
            capacity=batch.capacity,
            codes=batch.codes(),
        )

    async def SealTube(  # noqa: N802
        self, request: journey_pb2.SealTubeRequest, context: Any
    ) -> journey_pb2.StepReply:
        device = await self._device("SealTube", context)
        answer = await self._gateway.seal(
            device,
            request.event_id,
            request.tube_barcode,
            request.collector_id,
            request.sealed_at_ms,
        )
        return to_reply(answer, self._gateway.retry_after_ms)

    async def OpenBox(  # noqa: N802
        self, request: journey_pb2.OpenBoxRequest, context: Any
    ) -> journey_pb2.StepReply:
        device = await self._device("OpenBox", context)
        answer = await self._gateway.open_box(
            device,
            request.event_id,
            request.box_barcode,
            request.round,
            request.site_id,
        )
        return to_reply(answer, self._gateway.retry_after_ms)

    async def LoadTubes(  # noqa: N802
        self, request: journey_pb2.LoadTubesRequest, context: Any
    ) -> journey_pb2.StepsReply:
        device = await self._device("LoadTubes", context)
        answers = await self._gateway.load(
            device, request.event_id, request.box_barcode, list(request.tube_barcodes)
        )
        return self._steps(answers)

    async def DispatchBox(  # noqa: N802
        self, request: journey_pb2.DispatchBoxRequest, context: Any
    ) -> journey_pb2.StepReply:
        device = await self._device("DispatchBox", context)
        answer = await self._gateway.dispatch(
            device, request.event_id, request.box_barcode, request.vehicle, request.lab
        )
        return to_reply(answer, self._gateway.retry_after_ms)

    async def ReceiveBox(  # noqa: N802
        self, request: journey_pb2.ReceiveBoxRequest, context: Any
    ) -> journey_pb2.StepsReply:
        device = await self._device("ReceiveBox", context)
        answers = await self._gateway.receive(
            device, request.event_id, request.box_barcode, list(request.tube_barcodes)
        )
        return self._steps(answers)

    async def UploadResults(  # noqa: N802
        self, request: journey_pb2.UploadResultsRequest, context: Any
    ) -> journey_pb2.StepsReply:
        device = await self._device("UploadResults", context)
        items = [
            (
                item.tube_barcode,
                journey_pb2.TubeResult.Name(item.result),
                item.tested_at_ms,
            )
            for item in request.results
        ]
        answers = await self._gateway.results(device, items)
        done = sum(a.status == 1 for a in answers)
        summary = journey_pb2.StepReply(
            status=journey_pb2.DONE, message=f"{done} of {len(answers)} recorded"
        )
        wait = self._gateway.retry_after_ms
        return journey_pb2.StepsReply(
            reply=summary, items=[to_reply(a, wait) for a in answers]
        )

    async def GetTube(  # noqa: N802
        self, request: journey_pb2.TubeQuery, context: Any
    ) -> journey_pb2.TubeView:
        await self._device("GetTube", context)
        return await read_tube(self._store, request.tube_barcode.strip().upper())


async def read_tube(store: CqlStore, tube: str) -> journey_pb2.TubeView:
    """A tube's state and history from the store (three partition reads)."""
    view = journey_pb2.TubeView(tube_barcode=tube)
    rows = await store.execute(
        store.prepare("SELECT * FROM {ks}.tubes WHERE tube = ?"),
        (tube,),
        profile="lookup",
    )
    if not rows:
        return view
    row = rows[0]
    view.known = True
    view.round = row.round or 0
    view.district = row.district or ""
    view.site = row.site or ""
    view.capacity = row.capacity or 0
    view.result = row.result or ""
    view.stage = next((name for column, name in _STAGES if getattr(row, column)), "")
    bound = await store.execute(
        store.prepare(
            "SELECT COUNT(*) AS n FROM {ks}.registrations_by_tube WHERE tube = ?"
        ),
        (tube,),
        profile="lookup",
    )
    view.bound = int(bound[0].n) if bound else 0
    events = await store.execute(
        store.prepare(
            "SELECT stage, at, actor, box, detail FROM {ks}.tube_events WHERE tube = ?"
        ),
        (tube,),
        profile="lookup",
    )
    for event in sorted(events, key=lambda e: (to_ms(e.at) or 0, e.stage)):
        view.events.append(
            journey_pb2.TubeEvent(
                stage=event.stage,
                at_ms=to_ms(event.at) or 0,
                actor=event.actor or "",
                box=event.box or "",
                detail=event.detail or "",
            )
        )
    return view


def new_event_id() -> str:
    """A fresh event id, as devices make them."""
    return str(uuid.uuid4())
