"""The Rounds gRPC service: district systems pull their missed and new lists.

A district system presents ``x-sieve-district`` and a bearer token derived
like a generated device's (HMAC-SHA256 under the device-token key, of
``district:<code>``), and may read its own district only.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import structlog

from engine.auth import make_device_token
from engine.city import City
from engine.config import Settings
from engine.exceptions import AuthenticationError, IngestError
from engine.pii import Keyring, PiiCipher
from engine.rounds import RoundsReader, coverage
from engine.rounds_export import RowResolver
from engine.store import CqlStore
from sieve.v1 import rounds_pb2, rounds_pb2_grpc

__all__ = [
    "DISTRICT_HEADER",
    "DistrictAuthenticator",
    "RoundsService",
    "add_rounds_service",
    "make_district_token",
]

log = structlog.get_logger()

DISTRICT_HEADER = "x-sieve-district"
_LISTS = {
    rounds_pb2.MISSED: ("missed",),
    rounds_pb2.NEW: ("new",),
    rounds_pb2.PERSON_LIST_UNSPECIFIED: ("missed", "new"),
}
_LIST_ENUM = {"missed": rounds_pb2.MISSED, "new": rounds_pb2.NEW}


def make_district_token(device_token_key: bytes, district: str) -> str:
    """The token a district system presents."""
    return make_device_token(device_token_key, f"district:{district}")


class DistrictAuthenticator:
    """Checks a district system's credentials."""

    def __init__(self, city: City, device_token_key: bytes) -> None:
        self._districts = frozenset(city.districts)
        self._key = device_token_key

    # TODO: district tokens derive from the device-token key and cannot be
    # revoked one by one; a leaked token is valid until that key rotates.
    def authenticate(self, district: str, token: str) -> str:
        """Return the district if its token is right.

        Raises:
            AuthenticationError: unknown district or wrong token; the message
                does not say which.
        """
        if district not in self._districts:
            raise AuthenticationError("district not accepted", cause="unknown")
        expected = make_district_token(self._key, district)
        if not hmac.compare_digest(token, expected):
            raise AuthenticationError("district not accepted", cause="bad_token")
        return district


class RoundsService(rounds_pb2_grpc.RoundsServicer):
    """Serves comparisons from the store's participation rows.

    Args:
        settings: store address and keys file.
        authenticator: checks district credentials.
        cipher: opens the rows' personal fields.
    """

    def __init__(
        self,
        settings: Settings,
        authenticator: DistrictAuthenticator,
        cipher: PiiCipher,
    ) -> None:
        self._settings = settings
        self._auth = authenticator
        self._cipher = cipher
        self._store: CqlStore | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> CqlStore:
        async with self._connecting:
            if self._store is None:
                store = CqlStore(self._settings)
                await asyncio.to_thread(store.connect)
                self._store = store
            return self._store

    async def _district(
        self, asked: str, context: grpc.aio.ServicerContext
    ) -> str | None:
        metadata = dict(context.invocation_metadata() or ())
        district = str(metadata.get(DISTRICT_HEADER, ""))
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            own = self._auth.authenticate(district, token)
        except AuthenticationError as exc:
            log.info("district_refused", district=district, cause=exc.fields["cause"])
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            return None
        if asked and asked != own:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"district {own} may read only its own district, not {asked}",
            )
            return None
        return own

    async def Compare(  # noqa: N802 - name fixed by the proto
        self,
        request: rounds_pb2.CompareRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[rounds_pb2.CompareMessage]:
        district = await self._district(request.district, context)
        if district is None:
            return
        if request.round == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "round must be > 0")
            return
        store = await self._connected()
        against = list(request.against_rounds) or None
        try:
            index, diffs = await RoundsReader(store, self._cipher).compare(
                request.round, against
            )
        except IngestError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        diff = diffs.get(district)
        yield rounds_pb2.CompareMessage(
            summary=rounds_pb2.CompareSummary(
                district=district,
                missed=diff.num_missed if diff else 0,
                new=diff.num_new if diff else 0,
                registry_version=index.version,
            )
        )
        if diff is None:
            return
        resolver = RowResolver(store, self._cipher)
        async for chunk in resolver.rows(diff, index, lists=_LISTS[request.list]):
            for row in chunk:
                yield rounds_pb2.CompareMessage(
                    row=rounds_pb2.PersonRow(
                        list=cast(Any, _LIST_ENUM[row.list]),
                        id_number=row.id_number,
                        name=row.name,
                        phone=row.phone,
                        address=row.address,
                        on_registry=row.on_registry,
                    )
                )
        log.info("rounds_compared", district=district, round=request.round)

    async def Coverage(  # noqa: N802 - name fixed by the proto
        self,
        request: rounds_pb2.CoverageRequest,
        context: grpc.aio.ServicerContext,
    ) -> rounds_pb2.CoverageResponse:
        district = await self._district(request.district, context)
        if district is None:
            return rounds_pb2.CoverageResponse()
        store = await self._connected()
        sampled, expected = (await coverage(store, self._cipher, request.round)).get(
            district, (0, 0)
        )
        return rounds_pb2.CoverageResponse(
            district=district, sampled=sampled, expected=expected
        )


def add_rounds_service(
    server: grpc.aio.Server, settings: Settings, city: City, keyring: Keyring
) -> RoundsService:
    """Register the Rounds service on a gateway's server (before it starts)."""
    service = RoundsService(
        settings,
        DistrictAuthenticator(city, keyring.device_token),
        PiiCipher(keyring),
    )
    add = rounds_pb2_grpc.add_RoundsServicer_to_server
    add(service, server)  # type: ignore[no-untyped-call]
    return service
