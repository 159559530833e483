"""gRPC transport of the gateway: the Ingest stream, Operations, health, reflection.

The Ingest stream is registered with a raw-bytes handler so that a message
that does not parse ends that one stream with INVALID_ARGUMENT instead of
an opaque INTERNAL error; every other stream carries on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.auth import AuthenticatedDevice
from engine.city import Role
from engine.exceptions import AuthenticationError, BackpressureError
from engine.gateway import AckFields, IngestGateway
from engine.lookup_grpc import RESIDENTS_SERVICE, ResidentsServicer
from engine.operations import HostStatsReader, list_devices, saturation
from sieve.v1 import ingest_pb2, operations_pb2, operations_pb2_grpc

__all__ = ["GatewayServer", "to_ack"]

log = structlog.get_logger()

INGEST_SERVICE = "sieve.v1.Ingest"
OPERATIONS_SERVICE = "sieve.v1.Operations"
DEVICE_HEADER = "x-sieve-device"
RETRY_TRAILER = "retry-after-ms"


def to_ack(fields: AckFields) -> ingest_pb2.RegisterResponse:
    """Render an outcome as the message the device receives."""
    # Our IntEnums carry the proto enums' numbers; the stubs want their types.
    ack = ingest_pb2.Ack(
        registration_id=fields.registration_id,
        status=cast(Any, int(fields.outcome)),
        message=fields.message,
        received_at_ms=fields.received_at_ms,
        retry_after_ms=fields.retry_after_ms,
        image=cast(Any, int(fields.image.outcome)),
        image_message=fields.image.message,
    )
    if fields.reason is not None:
        ack.reason = cast(Any, int(fields.reason))
    return ingest_pb2.RegisterResponse(ack=ack)


class _IngestStream:
    """One device stream: reads requests, answers each, ends cleanly."""

    def __init__(self, gateway: IngestGateway, device: AuthenticatedDevice) -> None:
        self._gateway = gateway
        self._device = device
        # Answers wait in a deque; the response loop sleeps on one future that
        # the next answer (or the reader or a task ending) resolves: one wake
        # per burst of acks, not a queue getter and a wait() per ack.
        self._out: deque[ingest_pb2.RegisterResponse] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.error: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] | None
        self.error = None

    async def read(self, requests: AsyncIterator[bytes]) -> None:
        count = 0
        async for raw in requests:
            count += 1
            try:
                request = ingest_pb2.RegisterRequest.FromString(raw)
            except DecodeError:
                self._gateway.stats.num_malformed += 1
                self.error = (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"message {count} is not a sieve.v1.RegisterRequest",
                    (),
                )
                return
            kind = request.WhichOneof("kind")
            if kind == "heartbeat":
                self._gateway.heartbeat(self._device)
                self._push(
                    ingest_pb2.RegisterResponse(
                        heartbeat=ingest_pb2.HeartbeatAck(
                            sent_at_ms=request.heartbeat.sent_at_ms
                        )
                    )
                )
                continue
            if kind != "registration":
                self._gateway.stats.num_malformed += 1
                self.error = (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"message {count} carries neither registration nor heartbeat",
                    (),
                )
                return
            try:
                self._gateway.admit()
            except BackpressureError as exc:
                self.error = (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"gateway busy; resend unacked registrations after "
                    f"{exc.retry_after_ms} ms",
                    ((RETRY_TRAILER, str(exc.retry_after_ms)),),
                )
                return
            task = asyncio.get_running_loop().create_task(
                self._answer(request.registration)
            )
            self._pending.add(task)
            task.add_done_callback(self._finished)

    async def _answer(self, message: ingest_pb2.Registration) -> None:
        fields = await self._gateway.register(message, self._device)
        self._push(to_ack(fields))

    def _push(self, response: ingest_pb2.RegisterResponse) -> None:
        self._out.append(response)
        self._signal()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self._signal()

    def _signal(self, *_: object) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def responses(
        self, reader: asyncio.Task[None]
    ) -> AsyncIterator[ingest_pb2.RegisterResponse]:
        # Acks keep flowing while the reader runs; once it stops, every
        # admitted registration is still answered before the stream ends.
        reader.add_done_callback(self._signal)
        loop = asyncio.get_running_loop()
        while True:
            while self._out:
                yield self._out.popleft()
            if reader.done() and not self._pending:
                if not self._out:
                    return
                continue
            self._wake = loop.create_future()
            await self._wake
            self._wake = None


class GatewayServer:
    """The gateway's gRPC server with health checking and reflection.

    Args:
        gateway: the transport-free gateway logic.
        address: ``host:port`` to listen on.
        credentials: TLS credentials for the port; None listens in plain text
            (development, or behind a TLS-terminating load balancer).
    """

    def __init__(
        self,
        gateway: IngestGateway,
        address: str,
        credentials: grpc.ServerCredentials | None = None,
        host_stats: HostStatsReader | None = None,
        residents: ResidentsServicer | None = None,
    ) -> None:
        self.gateway = gateway
        self.services = [INGEST_SERVICE, OPERATIONS_SERVICE]
        """Services this port serves (health and reflection list them)."""
        self.address = address
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.max_concurrent_streams", 100_000),
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            INGEST_SERVICE,
            {
                "Register": grpc.stream_stream_rpc_method_handler(
                    self._register,
                    request_deserializer=None,
                    response_serializer=ingest_pb2.RegisterResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        # TODO: Operations and reflection share the device port without
        # authentication; anyone who reaches the port can read ingest counts
        # and the schema. Serve them on an operator port, or check a role.
        add_operations = operations_pb2_grpc.add_OperationsServicer_to_server
        operations = _Operations(gateway, host_stats)
        add_operations(operations, self.server)  # type: ignore[no-untyped-call]
        if residents is not None:
            residents.add_to(self.server)
            self.services.append(RESIDENTS_SERVICE)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                *self.services,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)

    async def start(self) -> None:
        """Listen and report SERVING."""
        await self.server.start()
        for service in ("", *self.services):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway_started", address=self.address, port=self.port)

    async def stop(self, drain_s: float = 5.0) -> None:
        """Report NOT_SERVING, wait ``drain_s``, then close within another.

        The first wait lets load balancers see the health change and send new
        streams elsewhere; the second lets open streams receive their acks.
        """
        for service in ("", *self.services):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(drain_s)
        await self.server.stop(drain_s)
        log.info("gateway_stopped", address=self.address)

    async def _register(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_pb2.RegisterResponse]:
        metadata = dict(context.invocation_metadata() or ())
        device_id = str(metadata.get(DEVICE_HEADER, ""))
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            device = self.gateway.authenticate(device_id, token)
        except AuthenticationError as exc:
            log.info("device_refused", device=device_id, cause=exc.fields.get("cause"))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            return
        if device.role is not Role.COLLECTOR:
            log.info("device_refused", device=device_id, cause="role")
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a {device.role} device may not register residents",
            )
            return

        stream = _IngestStream(self.gateway, device)
        self.gateway.stats.curr_open_streams += 1
        self.gateway.presence.stream_opened(
            device.id, device.site, device.district, _now_ms()
        )
        reader = asyncio.get_running_loop().create_task(stream.read(requests))
        try:
            async for response in stream.responses(reader):
                yield response
            reader.result()
        finally:
            self.gateway.stats.curr_open_streams -= 1
            self.gateway.presence.stream_closed(device.id)
            if not reader.done():
                reader.cancel()
        if stream.error is not None:
            code, details, trailers = stream.error
            log.info("stream_ended", device=device.id, code=code.name)
            await context.abort(code, details, trailing_metadata=trailers)


class _Operations(operations_pb2_grpc.OperationsServicer):
    def __init__(
        self, gateway: IngestGateway, host_stats: HostStatsReader | None = None
    ) -> None:
        self._gateway = gateway
        self._host_stats = host_stats

    async def ListDevices(  # noqa: N802 - name fixed by the proto
        self,
        request: operations_pb2.ListDevicesRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.ListDevicesResponse:
        try:
            return list_devices(self._gateway, request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # pragma: no cover - abort raises

    async def GetSaturation(  # noqa: N802 - name fixed by the proto
        self,
        request: operations_pb2.SaturationRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.SaturationResponse:
        return await saturation(self._gateway, self._host_stats)

    async def GetIngestStats(  # noqa: N802 - name fixed by the proto
        self,
        request: operations_pb2.IngestStatsRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.IngestStatsResponse:
        stats = self._gateway.stats
        minutes = request.minutes or 10
        reply = operations_pb2.IngestStatsResponse(
            open_streams=stats.curr_open_streams,
            inflight=stats.curr_inflight,
            backpressure_events=stats.num_backpressure_events,
            retry_acks=stats.num_retry_acks,
            started_at_ms=stats.started_at_ms,
        )
        for code, district in self._gateway.city.districts.items():
            reply.districts.append(
                operations_pb2.DistrictStats(
                    district=code,
                    name=district.name,
                    stored=stats.stored.total(code),
                    duplicate=stats.duplicate.total(code),
                    rejected=stats.rejected.total(code),
                    per_minute=[
                        operations_pb2.MinuteCount(minute_ms=m, count=c)
                        for m, c in stats.stored.recent(code, minutes)
                    ],
                )
            )
        return reply


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
