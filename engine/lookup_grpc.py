"""gRPC transport of the Residents service: Lookup and SubmitCorrection.

Every call is authenticated (``x-sieve-client`` and a bearer token, see
:mod:`engine.lookup_clients`) and charged to the client's token bucket before
anything is read; over the limit it ends RESOURCE_EXHAUSTED with a
``retry-after-ms`` trailer. Malformed requests end INVALID_ARGUMENT naming the
field and rule; store trouble ends UNAVAILABLE, and the call may be repeated.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
import structlog

from engine.city import City
from engine.config import Settings
from engine.corrections import CorrectionInput, CorrectionQueue
from engine.corrections_merge import RegistrationEditor
from engine.exceptions import AuthenticationError, StoreError
from engine.lookup import Actor, RequestInvalid, ResidentLookup
from engine.lookup_clients import CLIENT_HEADER, LookupClientAuthenticator
from engine.pii import Keyring, PiiCipher
from engine.ratelimit import RateLimiter
from engine.store import CqlStore
from sieve.v1 import residents_pb2, residents_pb2_grpc

__all__ = ["RESIDENTS_SERVICE", "ResidentsServicer", "build_residents"]

log = structlog.get_logger()

RESIDENTS_SERVICE = "sieve.v1.Residents"
RETRY_TRAILER = "retry-after-ms"


class ResidentsServicer(residents_pb2_grpc.ResidentsServicer):
    """Answers resident look-ups and takes correction requests.

    Args:
        authenticator: checks client ids and tokens.
        limiter: one token bucket per client.
        lookup: the look-up logic (audits each look-up).
        corrections: the corrections queue.
        store: closed by :meth:`close`; None if the caller owns it.
    """

    def __init__(
        self,
        authenticator: LookupClientAuthenticator,
        limiter: RateLimiter,
        lookup: ResidentLookup,
        corrections: CorrectionQueue,
        store: CqlStore | None = None,
    ) -> None:
        self.limiter = limiter
        self.lookup = lookup
        self.corrections = corrections
        self._authenticator = authenticator
        self._store = store

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register this servicer on a server that has not started."""
        add = residents_pb2_grpc.add_ResidentsServicer_to_server
        add(self, server)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close the store connection this servicer owns."""
        if self._store is not None:
            self._store.close()

    async def Lookup(  # noqa: N802 - name fixed by the proto
        self, request: residents_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.LookupResponse:
        client = await self._admit(context)
        try:
            answer = await self.lookup.lookup(
                Actor("client", client),
                int(request.document_type),
                request.document_number,
            )
        except RequestInvalid as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except StoreError as exc:
            log.warning("lookup_failed", client=client, error=str(exc), next="retry")
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "store unavailable")
        return residents_pb2.LookupResponse(
            found=answer.found,
            masked_number=answer.masked,
            records=[
                residents_pb2.SamplingRecord(
                    round=record.round,
                    captured_at_ms=record.captured_at_ms,
                    site_id=record.site,
                    site_name=record.site_name,
                    district=record.district,
                    tube_barcode=record.tube,
                )
                for record in answer.records
            ],
        )

    async def SubmitCorrection(  # noqa: N802 - name fixed by the proto
        self,
        request: residents_pb2.CorrectionRequest,
        context: grpc.aio.ServicerContext,
    ) -> residents_pb2.CorrectionReceipt:
        client = await self._admit(context)
        try:
            correction_id, at_ms = await self.corrections.submit(
                Actor("client", client),
                CorrectionInput(
                    name=request.name,
                    doc_type=int(request.document_type),
                    number=request.document_number,
                    phone=request.phone,
                    round=request.round,
                    site=request.site_id,
                    sampled_at_ms=request.sampled_at_ms,
                ),
            )
        except RequestInvalid as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except StoreError as exc:
            log.warning("correction_failed", client=client, error=str(exc))
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "store unavailable")
        return residents_pb2.CorrectionReceipt(
            correction_id=correction_id, submitted_at_ms=at_ms
        )

    async def _admit(self, context: grpc.aio.ServicerContext) -> str:
        metadata = dict(context.invocation_metadata() or ())
        client_id = str(metadata.get(CLIENT_HEADER, ""))
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            client = self._authenticator.authenticate(client_id, token)
        except AuthenticationError as exc:
            log.info("client_refused", client=client_id, cause=exc.fields.get("cause"))
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)

        decision = self.limiter.take(client)
        if not decision.allowed:
            log.info("client_limited", client=client, retry_ms=decision.retry_after_ms)
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"over {self.limiter.rate_per_s:g} calls/s; retry after "
                f"{decision.retry_after_ms} ms",
                ((RETRY_TRAILER, str(decision.retry_after_ms)),),
            )
        return client


async def _abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    details: str,
    trailers: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    await context.abort(code, details, trailing_metadata=trailers)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def build_residents(
    settings: Settings, city: City, keyring: Keyring
) -> ResidentsServicer:
    """Connect a store and build the servicer from settings (blocking)."""
    store = CqlStore(settings)
    store.connect()
    cipher = PiiCipher(keyring)
    editor = RegistrationEditor(store, cipher)
    return ResidentsServicer(
        LookupClientAuthenticator(keyring.device_token, settings.lookup_clients),
        RateLimiter(settings.lookup_rate_per_s, settings.lookup_burst),
        ResidentLookup(store, cipher, city, max_records=settings.lookup_max_records),
        CorrectionQueue(store, cipher, city, editor),
        store=store,
    )
