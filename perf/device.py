"""A simulated collector device: one authenticated stream, acks matched by id.

It behaves as the phone app must: it keeps every registration until a final
ack (STORED, DUPLICATE or REJECTED) arrives; a RETRY ack, a RESOURCE_EXHAUSTED
end of stream or a lost connection makes it resend what is still unacked,
after the server's hint.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc

from sieve.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["FINAL_STATUSES", "DeviceReport", "DeviceStream", "send_all"]

FINAL_STATUSES = frozenset(
    {ingest_pb2.STORED, ingest_pb2.DUPLICATE, ingest_pb2.REJECTED}
)
RESENDABLE_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
    }
)
_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 2.0


@dataclass
class DeviceReport:
    """What one device saw."""

    acks: dict[str, ingest_pb2.Ack] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    num_retry_acks: int = 0
    num_heartbeats: int = 0
    stream_errors: dict[str, int] = field(default_factory=dict)


class DeviceStream:
    """Streams registrations for one device until each has a final ack.

    Feed registrations with :meth:`put`, call :meth:`close` when there are no
    more, and await :meth:`run`, which returns once every registration put has
    a final ack.

    Args:
        channel: an open ``grpc.aio`` channel to a gateway.
        device_id: the device's id.
        token: its bearer token.
        window: registrations sent but not yet acked at most; a phone sends
            one at a time (1), a device flushing a backlog sends more.
        heartbeat_s: send a heartbeat after this long with nothing to send
            (0: never).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        device_id: str,
        token: str,
        *,
        window: int = 1,
        heartbeat_s: float = 0.0,
    ) -> None:
        self.device_id = device_id
        self.report = DeviceReport()
        self._stub = ingest_pb2_grpc.IngestStub(channel)
        self._metadata = (
            ("x-sieve-device", device_id),
            ("authorization", f"Bearer {token}"),
        )
        self._window = window
        self._heartbeat_s = heartbeat_s
        self._pending: dict[str, ingest_pb2.Registration] = {}
        self._first_sent: dict[str, float] = {}
        self._ready: collections.deque[str] = collections.deque()
        self._closed = False
        self._wake = asyncio.Event()

    def put(self, registration: ingest_pb2.Registration) -> None:
        """Queue a registration for sending."""
        self._pending[registration.registration_id] = registration
        self._ready.append(registration.registration_id)
        self._wake.set()

    def close(self) -> None:
        """No more registrations will be put."""
        self._closed = True
        self._wake.set()

    @property
    def unacked(self) -> int:
        """Registrations without a final ack yet."""
        return len(self._pending)

    async def run(self, *, deadline_s: float = 600) -> DeviceReport:
        """Keep a stream open until closed and everything is acked.

        Raises:
            TimeoutError: registrations were still unacked at the deadline.
            grpc.aio.AioRpcError: the gateway refused the device (for example
                UNAUTHENTICATED or INVALID_ARGUMENT): resending cannot help.
        """
        give_up = time.monotonic() + deadline_s
        delay_s = _RECONNECT_FIRST_S
        while not (self._closed and not self._pending):
            if time.monotonic() > give_up:
                raise TimeoutError(f"{len(self._pending)} registrations unacked")
            try:
                await asyncio.wait_for(
                    self._connection(), timeout=max(give_up - time.monotonic(), 0.01)
                )
                delay_s = _RECONNECT_FIRST_S
                continue
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                errors = self.report.stream_errors
                errors[code.name] = errors.get(code.name, 0) + 1
                if code not in RESENDABLE_CODES:
                    raise
                hint = dict(exc.trailing_metadata() or ()).get("retry-after-ms")
                wait_s = int(hint) / 1000 if hint else delay_s
            except TimeoutError:
                continue
            await asyncio.sleep(wait_s)
            delay_s = min(delay_s * 2, _RECONNECT_MAX_S)
        return self.report

    async def _connection(self) -> None:
        call = self._stub.Register(metadata=self._metadata)
        inflight: set[str] = set()
        writer = asyncio.ensure_future(self._write(call, inflight))
        try:
            await self._read(call, inflight)
            await writer
        finally:
            writer.cancel()
            # Whatever was sent on this stream and not answered goes out again.
            self._ready.extendleft(k for k in inflight if k in self._pending)

    async def _write(self, call: grpc.aio.StreamStreamCall, inflight: set[str]) -> None:
        while True:
            while not self._ready or len(inflight) >= self._window:
                if self._closed and not self._pending:
                    await call.done_writing()
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self._heartbeat_s or None
                    )
                except TimeoutError:
                    self.report.num_heartbeats += 1
                    beat = ingest_pb2.Heartbeat(sent_at_ms=time.time_ns() // 1_000_000)
                    await call.write(ingest_pb2.RegisterRequest(heartbeat=beat))
            key = self._ready.popleft()
            if key not in self._pending or key in inflight:
                continue
            inflight.add(key)
            self._first_sent.setdefault(key, time.monotonic())
            await call.write(
                ingest_pb2.RegisterRequest(registration=self._pending[key])
            )

    async def _read(self, call: grpc.aio.StreamStreamCall, inflight: set[str]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                code = await call.code()
                if code != grpc.StatusCode.OK:
                    raise grpc.aio.AioRpcError(
                        code=code,
                        initial_metadata=await call.initial_metadata(),
                        trailing_metadata=await call.trailing_metadata(),
                        details=await call.details(),
                    )
                return
            if response.WhichOneof("kind") != "ack":
                continue
            ack = response.ack
            key = ack.registration_id
            inflight.discard(key)
            if ack.status in FINAL_STATUSES:
                if self._pending.pop(key, None) is not None:
                    now = time.monotonic()
                    self.report.acks[key] = ack
                    self.report.ack_times.append(now)
                    started = self._first_sent.pop(key, now)
                    self.report.latencies_ms.append((now - started) * 1000)
            elif ack.status == ingest_pb2.RETRY:
                self.report.num_retry_acks += 1
                loop.call_later(ack.retry_after_ms / 1000, self._requeue, key)
            self._wake.set()

    def _requeue(self, key: str) -> None:
        if key in self._pending:
            self._ready.append(key)
            self._wake.set()


async def send_all(
    channel: grpc.aio.Channel,
    device_id: str,
    token: str,
    registrations: Iterable[ingest_pb2.Registration],
    *,
    window: int = 1,
    deadline_s: float = 300,
) -> DeviceReport:
    """Send a fixed list of registrations from one device; wait for final acks."""
    stream = DeviceStream(channel, device_id, token, window=window)
    for registration in registrations:
        stream.put(registration)
    stream.close()
    return await stream.run(deadline_s=deadline_s)
