"""A do-nothing Ingest server: same proto and options, acks STORED at once.

It is the gRPC half of the bench's ceiling: the same load generator fed
against it shows what this machine's gRPC stack (client and server in Python)
can move at all, with no validation, batching, Ray or store behind it. Run it
as its own process: ``python -m perf.stub_server --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import AsyncIterator

import grpc

from sieve.v1 import ingest_pb2, ingest_pb2_grpc, operations_pb2, operations_pb2_grpc

__all__ = ["StubIngest", "StubOperations", "serve"]

_SERVER_OPTIONS = [
    # The gateway's own options (engine.grpc_server), so only the work differs.
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_concurrent_streams", 100_000),
]


class StubIngest(ingest_pb2_grpc.IngestServicer):
    """Answers every registration STORED and every heartbeat, nothing else."""

    def __init__(self) -> None:
        self.open_streams = 0

    async def Register(  # noqa: N802 - name fixed by the proto
        self,
        request_iterator: AsyncIterator[ingest_pb2.RegisterRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ingest_pb2.RegisterResponse]:
        """Echo an ack for each message of the stream, in order."""
        self.open_streams += 1
        try:
            async for response in self._answer(request_iterator):
                yield response
        finally:
            self.open_streams -= 1

    async def _answer(
        self, request_iterator: AsyncIterator[ingest_pb2.RegisterRequest]
    ) -> AsyncIterator[ingest_pb2.RegisterResponse]:
        async for request in request_iterator:
            if request.WhichOneof("kind") == "registration":
                yield ingest_pb2.RegisterResponse(
                    ack=ingest_pb2.Ack(
                        registration_id=request.registration.registration_id,
                        status=ingest_pb2.STORED,
                        received_at_ms=time.time_ns() // 1_000_000,
                    )
                )
            else:
                yield ingest_pb2.RegisterResponse(
                    heartbeat=ingest_pb2.HeartbeatAck(
                        sent_at_ms=request.heartbeat.sent_at_ms
                    )
                )


class StubOperations(operations_pb2_grpc.OperationsServicer):
    """Reports the stub's open streams, so the bench can wait for them."""

    def __init__(self, ingest: StubIngest) -> None:
        self._ingest = ingest

    async def GetIngestStats(  # noqa: N802 - name fixed by the proto
        self,
        request: operations_pb2.IngestStatsRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.IngestStatsResponse:
        """Open streams only; every other counter stays zero."""
        return operations_pb2.IngestStatsResponse(
            open_streams=self._ingest.open_streams
        )


async def serve(port: int) -> None:
    """Listen on ``127.0.0.1:port`` until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    ingest = StubIngest()
    ingest_pb2_grpc.add_IngestServicer_to_server(  # type: ignore[no-untyped-call]
        ingest, server
    )
    add_operations = operations_pb2_grpc.add_OperationsServicer_to_server
    add_operations(StubOperations(ingest), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(0.5)


def main() -> None:
    """Entry point of the stub server process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
