"""The gateway's logic: authenticate, validate, admit, route and answer.

Transport-free: :mod:`engine.grpc_server` adapts it to gRPC, and tests can
drive it directly. It holds no registration longer than it takes to be stored,
and never more than ``max_inflight_records`` at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from engine.auth import AuthenticatedDevice, DeviceAuthenticator
from engine.batching import MicroBatcher
from engine.card_images import ImageCheck, ImageOutcome, check_card_image
from engine.city import City
from engine.config import Settings
from engine.counters import MinuteCounter
from engine.exceptions import (
    BackpressureError,
    ShardUnavailable,
    StoreError,
    StoreUnavailable,
)
from engine.presence import DevicePresence
from engine.registration import Outcome, RejectReason
from engine.routing import DistrictRouter, ShardItem, ShardPool
from engine.validation import RegistrationValidator, Rejection
from sieve.v1 import ingest_pb2

__all__ = ["AckFields", "GatewayStats", "IngestGateway"]

log = structlog.get_logger()


NO_IMAGE = ImageCheck(ImageOutcome.NONE)

TUBE_MESSAGES = {
    RejectReason.TUBE_UNKNOWN: "tube barcode was never printed for a site",
    RejectReason.TUBE_FULL: "tube is full; seal it and start a new one",
    RejectReason.TUBE_SEALED: "tube is sealed; start a new one",
    RejectReason.TUBE_IN_USE: "another collector is filling this tube",
    RejectReason.TUBE_OTHER_ROUND: "tube holds samples of another round",
}
"""What the collector's screen says when a tube refuses a resident."""


@dataclass(frozen=True, slots=True)
class AckFields:
    """What the device is told about one registration."""

    registration_id: str
    outcome: Outcome
    received_at_ms: int
    reason: RejectReason | None = None
    message: str = ""
    retry_after_ms: int = 0
    image: ImageCheck = NO_IMAGE


@dataclass
class GatewayStats:
    """Counters of one gateway process since it started.

    TODO: these live in memory and restart at zero with the process; the exact
    per-minute counts are in the store (registrations_by_minute), which the
    live views do not read yet.
    """

    started_at_ms: int
    stored: MinuteCounter
    duplicate: MinuteCounter
    rejected: MinuteCounter
    curr_open_streams: int = 0
    curr_inflight: int = 0
    num_backpressure_events: int = 0
    num_retry_acks: int = 0
    num_malformed: int = 0
    num_unauthenticated: int = 0


class AttemptIds:
    """Names each receipt: a random per-process prefix and a counter.

    As unique as a random UUID per receipt, without a system call each.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count()

    def next(self) -> bytes:
        """16 bytes never returned before by any gateway process."""
        return self._prefix + next(self._counter).to_bytes(8, "big")


class IngestGateway:
    """Turns device registrations into acks, through shards and the store.

    Backpressure: at most ``settings.max_inflight_records`` registrations are
    held between arrival and ack. :meth:`admit` raises
    :class:`BackpressureError` past that; the transport ends the stream with
    RESOURCE_EXHAUSTED and the retry hint, and the device resends whatever
    was not acked. Store and shard failures become RETRY acks: nothing is
    acknowledged as stored unless the store took it.

    Args:
        settings: engine settings (batch sizes, limits, hints).
        city: districts, sites and devices.
        authenticator: checks device tokens.
        pool: runs the shards (Ray actors in production).
        router: maps registrations to shards.
    """

    def __init__(
        self,
        settings: Settings,
        city: City,
        authenticator: DeviceAuthenticator,
        pool: ShardPool,
        router: DistrictRouter,
    ) -> None:
        self.settings = settings
        self.city = city
        self.stats = GatewayStats(
            started_at_ms=_now_ms(),
            stored=MinuteCounter(),
            duplicate=MinuteCounter(),
            rejected=MinuteCounter(),
        )
        self.presence = DevicePresence()
        """Devices heard from and per-site stored counts, for the console."""
        self._auth = authenticator
        self._validator = RegistrationValidator(
            city,
            max_capture_age_h=settings.max_capture_age_h,
            max_clock_skew_s=settings.max_clock_skew_s,
        )
        self._router = router
        self._attempts = AttemptIds()
        self._batchers: list[MicroBatcher[ShardItem]] = [
            MicroBatcher(
                host,
                pool.write,
                max_records=settings.batch_max_records,
                wait_s=settings.batch_wait_ms / 1000,
                max_inflight_batches=settings.shard_max_inflight_batches,
            )
            for host in range(router.num_hosts)
        ]

    def authenticate(self, device_id: str, token: str) -> AuthenticatedDevice:
        """Check a device's credentials (raises AuthenticationError)."""
        try:
            device = self._auth.authenticate(device_id, token)
        except Exception:
            self.stats.num_unauthenticated += 1
            raise
        self.presence.seen(device.id, device.site, device.district, _now_ms())
        return device

    def heartbeat(self, device: AuthenticatedDevice) -> None:
        """Note a heartbeat: the device is alive though it has nothing to send."""
        self.presence.seen(device.id, device.site, device.district, _now_ms())

    def admit(self) -> None:
        """Reserve room for one registration, or push the device back.

        Raises:
            BackpressureError: the gateway already holds its limit.
        """
        if self.stats.curr_inflight >= self.settings.max_inflight_records:
            self.stats.num_backpressure_events += 1
            raise BackpressureError(
                "gateway is at its in-flight limit",
                retry_after_ms=self.settings.backpressure_retry_ms,
                inflight=self.stats.curr_inflight,
            )
        self.stats.curr_inflight += 1

    async def register(
        self, message: ingest_pb2.Registration, device: AuthenticatedDevice
    ) -> AckFields:
        """Validate, store and answer one admitted registration.

        The caller must have called :meth:`admit` first; the slot is released
        here whatever happens.
        """
        try:
            return await self._register(message, device)
        finally:
            self.stats.curr_inflight -= 1

    async def _register(
        self, message: ingest_pb2.Registration, device: AuthenticatedDevice
    ) -> AckFields:
        received_at_ms = _now_ms()
        self.presence.seen(device.id, device.site, device.district, received_at_ms)
        checked = self._validator.validate(
            message, device, received_at_ms, self._attempts.next()
        )
        if isinstance(checked, Rejection):
            self.stats.rejected.add(device.district, received_at_ms)
            log.debug(
                "registration_rejected", device=device.id, reason=checked.reason.name
            )
            return AckFields(
                registration_id=message.registration_id,
                outcome=Outcome.REJECTED,
                received_at_ms=received_at_ms,
                reason=checked.reason,
                message=checked.message,
            )

        image = check_card_image(message.id_card_image, self.settings.max_image_bytes)
        if image.outcome is ImageOutcome.ACCEPTED:
            checked = checked._replace(image=message.id_card_image)
        shard_id = self._router.shard_for(checked.district, checked.tube.encode())
        try:
            batcher = self._batchers[self._router.host_for(shard_id)]
            outcome = await batcher.submit((shard_id, checked))
        except (StoreUnavailable, ShardUnavailable) as exc:
            return self._retry_ack(message, received_at_ms, exc)
        except StoreError as exc:
            # The store refused a statement: a bug or a schema out of step,
            # not the device's fault. Answer RETRY so nothing is falsely
            # acked, and say so loudly.
            log.error("store_refused_batch", error=str(exc))
            return self._retry_ack(message, received_at_ms, StoreUnavailable(str(exc)))
        if isinstance(outcome, RejectReason):
            self.stats.rejected.add(checked.district, received_at_ms)
            return AckFields(
                registration_id=message.registration_id,
                outcome=Outcome.REJECTED,
                received_at_ms=received_at_ms,
                reason=outcome,
                message=TUBE_MESSAGES.get(outcome, "refused by the tube's shard"),
                image=image,
            )
        if outcome is Outcome.RETRY:
            return self._retry_ack(
                message, received_at_ms, StoreUnavailable("shard could not write")
            )

        counter = (
            self.stats.stored if outcome is Outcome.STORED else self.stats.duplicate
        )
        counter.add(checked.district, received_at_ms)
        if outcome is Outcome.STORED:
            self.presence.stored(
                device.id, checked.site, checked.district, checked.round, received_at_ms
            )
        return AckFields(
            registration_id=message.registration_id,
            outcome=outcome,
            received_at_ms=received_at_ms,
            image=image,
        )

    def _retry_ack(
        self,
        message: ingest_pb2.Registration,
        received_at_ms: int,
        exc: StoreUnavailable | ShardUnavailable,
    ) -> AckFields:
        self.stats.num_retry_acks += 1
        reason = (
            RejectReason.STORE_UNAVAILABLE
            if isinstance(exc, StoreUnavailable)
            else RejectReason.SHARD_UNAVAILABLE
        )
        return AckFields(
            registration_id=message.registration_id,
            outcome=Outcome.RETRY,
            received_at_ms=received_at_ms,
            reason=reason,
            message="not stored; resend after the retry delay",
            retry_after_ms=self.settings.backpressure_retry_ms,
        )

    async def drain(self) -> None:
        """Send every open batch and wait for all sends to finish."""
        await asyncio.gather(*(b.drain() for b in self._batchers))

    def batchers(self) -> Sequence[MicroBatcher[ShardItem]]:
        """Per-host batchers, for metrics."""
        return list(self._batchers)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
