"""The gateway side of the journey: roles, validation and routing of steps.

Transport-free: :mod:`engine.journey_service` turns gRPC requests into calls
here. A step is checked (role, barcodes, district, lab, round) and sent to the
shard host owning its tube or box; results of many tubes are grouped by host
so an upload of a thousand results is a few Ray calls, not a thousand.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Protocol

import structlog

from engine.auth import AuthenticatedDevice
from engine.barcodes import BarcodeError, parse_box_code, parse_tube_code
from engine.city import City, Role
from engine.exceptions import ShardUnavailable, StoreError, StoreUnavailable
from engine.journey import (
    RESULTS,
    DispatchBox,
    LoadTubes,
    OpenBox,
    ReceiveBox,
    RecordResult,
    SealTube,
    Step,
    StepAnswer,
    StepReason,
    StepStatus,
)
from engine.routing import DistrictRouter
from engine.tube_allocation import AllocationError, TubeAllocator, TubeBatch

__all__ = ["ROLES", "JourneyGateway", "JourneyPool", "RoleError"]

log = structlog.get_logger()

MAX_ROUND = 10_000
MAX_TUBES_PER_STEP = 2_000
_MAX_CLOCK_SKEW_MS = 300_000
_MAX_AGE_MS = 72 * 3_600_000

ROLES = {
    "AllocateTubes": (Role.PRINTER,),
    "SealTube": (Role.COLLECTOR,),
    "OpenBox": (Role.TRANSPORTER,),
    "LoadTubes": (Role.TRANSPORTER,),
    "DispatchBox": (Role.TRANSPORTER,),
    "ReceiveBox": (Role.LAB,),
    "UploadResults": (Role.LAB,),
    "GetTube": tuple(Role),
}
"""Which device roles may make each call."""


class RoleError(Exception):
    """A device called something its role may not do."""


class JourneyPool(Protocol):
    """What the journey gateway needs from the shards, whatever runs them."""

    async def apply(
        self, host: int, shard_id: str, steps: Sequence[Step]
    ) -> list[list[StepAnswer]]:
        """Apply steps on a shard host; one answer list per step, in order.

        Raises:
            StoreUnavailable: the store did not take them; resend the same.
            ShardUnavailable: the host did not answer in time.
        """
        ...  # pragma: no cover


class JourneyGateway:
    """Checks and routes journey steps.

    Args:
        city: districts, sites, labs.
        router: the same router registrations use.
        pool: the shard hosts.
        allocator: hands out tube serials (printers).
        retry_after_ms: advised wait on TRY_AGAIN.
    """

    def __init__(
        self,
        city: City,
        router: DistrictRouter,
        pool: JourneyPool,
        allocator: TubeAllocator,
        *,
        retry_after_ms: int = 1_000,
    ) -> None:
        self._city = city
        self._router = router
        self._pool = pool
        self._allocator = allocator
        self.retry_after_ms = retry_after_ms

    @staticmethod
    def check_role(call: str, device: AuthenticatedDevice) -> None:
        """Refuse a device whose role may not make ``call``.

        Raises:
            RoleError: with a message naming the role and the call.
        """
        if device.role not in ROLES[call]:
            raise RoleError(f"a {device.role} device may not call {call}")

    async def allocate(
        self, device: AuthenticatedDevice, count: int, capacity: int
    ) -> TubeBatch | StepAnswer:
        """Allocate tubes for the printer's own site."""
        self.check_role("AllocateTubes", device)
        try:
            return await asyncio.to_thread(
                self._allocator.allocate, device.site, count, capacity, device.id
            )
        except AllocationError as exc:
            reason = (
                StepReason.INVALID_CAPACITY
                if "capacity" in exc.message
                else StepReason.INVALID_COUNT
            )
            return StepAnswer.refused(device.site, reason, exc.message)
        except (StoreUnavailable, StoreError) as exc:
            return self._try_again(device.site, exc)

    async def seal(
        self,
        device: AuthenticatedDevice,
        event_id: str,
        tube: str,
        collector: str,
        sealed_at_ms: int,
    ) -> StepAnswer:
        """A collector seals a tube."""
        self.check_role("SealTube", device)
        now = _now_ms()
        event = _event(event_id)
        if event is None:
            return _bad_event(tube)
        try:
            code = parse_tube_code(tube)
        except BarcodeError as exc:
            return StepAnswer.refused(tube, StepReason.INVALID_TUBE_BARCODE, str(exc))
        if code.district != device.district:
            return _other_district(code.code, code.district)
        if not now - _MAX_AGE_MS <= sealed_at_ms <= now + _MAX_CLOCK_SKEW_MS:
            sealed_at_ms = now  # a device clock far off: use the gateway's
        step = SealTube(
            event, code.code, code.district, collector, device.id, sealed_at_ms
        )
        return (await self._send(code.district, code.code, [step]))[0][0]

    async def open_box(
        self,
        device: AuthenticatedDevice,
        event_id: str,
        box: str,
        round_no: int,
        site: str,
    ) -> StepAnswer:
        """A transporter starts a trip of a box from a site of its district."""
        self.check_role("OpenBox", device)
        event = _event(event_id)
        if event is None:
            return _bad_event(box)
        parsed = self._box(box, device)
        if isinstance(parsed, StepAnswer):
            return parsed
        if not 1 <= round_no <= MAX_ROUND:
            return StepAnswer.refused(box, StepReason.INVALID_ROUND, "bad round")
        if self._city.district_of_site(site) != device.district:
            return StepAnswer.refused(
                box,
                StepReason.INVALID_SITE,
                "site is not in the transporter's district",
            )
        step = OpenBox(
            event, parsed, device.district, round_no, site, device.id, _now_ms()
        )
        return (await self._send(device.district, parsed, [step]))[0][0]

    async def load(
        self, device: AuthenticatedDevice, event_id: str, box: str, tubes: Sequence[str]
    ) -> list[StepAnswer]:
        """A transporter scans tubes into its open box."""
        self.check_role("LoadTubes", device)
        checked = self._box_step_input(device, event_id, box, tubes)
        if isinstance(checked, list):
            return checked
        event, code = checked
        step = LoadTubes(
            event, code, device.district, tuple(tubes), device.id, _now_ms()
        )
        return (await self._send(device.district, code, [step]))[0]

    async def dispatch(
        self,
        device: AuthenticatedDevice,
        event_id: str,
        box: str,
        vehicle: str,
        lab: str,
    ) -> StepAnswer:
        """A transporter signs for a box and leaves for a lab."""
        self.check_role("DispatchBox", device)
        event = _event(event_id)
        if event is None:
            return _bad_event(box)
        parsed = self._box(box, device)
        if isinstance(parsed, StepAnswer):
            return parsed
        vehicle = vehicle.strip()
        if not 1 <= len(vehicle) <= 32:
            return StepAnswer.refused(
                box, StepReason.INVALID_VEHICLE, "vehicle must be 1-32 characters"
            )
        if lab not in self._city.labs:
            return StepAnswer.refused(box, StepReason.UNKNOWN_LAB, "unknown lab")
        step = DispatchBox(
            event, parsed, device.district, vehicle, lab, device.id, _now_ms()
        )
        return (await self._send(device.district, parsed, [step]))[0][0]

    async def receive(
        self, device: AuthenticatedDevice, event_id: str, box: str, tubes: Sequence[str]
    ) -> list[StepAnswer]:
        """A lab scans a box on arrival and each tube out of it."""
        self.check_role("ReceiveBox", device)
        checked = self._box_step_input(device, event_id, box, tubes)
        if isinstance(checked, list):
            return checked
        event, code = checked
        district = parse_box_code(code).district
        step = ReceiveBox(
            event, code, district, tuple(tubes), device.lab, device.id, _now_ms()
        )
        return (await self._send(district, code, [step]))[0]

    async def results(
        self, device: AuthenticatedDevice, items: Sequence[tuple[str, str, int]]
    ) -> list[StepAnswer]:
        """A lab's results: (tube, result name, tested_at_ms) each."""
        self.check_role("UploadResults", device)
        now = _now_ms()
        answers: list[StepAnswer | None] = [None] * len(items)
        by_shard: dict[str, list[tuple[int, RecordResult]]] = {}
        for position, (tube, result, tested_at_ms) in enumerate(items):
            try:
                code = parse_tube_code(tube)
            except BarcodeError as exc:
                answers[position] = StepAnswer.refused(
                    tube, StepReason.INVALID_TUBE_BARCODE, str(exc)
                )
                continue
            if result not in RESULTS:
                answers[position] = StepAnswer.refused(
                    tube,
                    StepReason.INVALID_RESULT,
                    "result must be " + "/".join(RESULTS),
                )
                continue
            if not 0 < tested_at_ms <= now + _MAX_CLOCK_SKEW_MS:
                tested_at_ms = now
            shard = self._router.shard_for(code.district, code.code.encode())
            step = RecordResult(
                code.code,
                code.district,
                result,
                device.lab,
                device.id,
                tested_at_ms,
                now,
            )
            by_shard.setdefault(shard, []).append((position, step))

        async def send(shard: str, group: list[tuple[int, RecordResult]]) -> None:
            steps = [step for _, step in group]
            try:
                replies = await self._pool.apply(
                    self._router.host_for(shard), shard, steps
                )
                got = [reply[0] for reply in replies]
            except (StoreUnavailable, ShardUnavailable, StoreError) as exc:
                got = [self._try_again(step.tube, exc) for step in steps]
            for (position, _), answer in zip(group, got, strict=True):
                answers[position] = answer

        await asyncio.gather(*(send(s, g) for s, g in by_shard.items()))
        return [a for a in answers if a is not None]

    def _box_step_input(
        self, device: AuthenticatedDevice, event_id: str, box: str, tubes: Sequence[str]
    ) -> tuple[bytes, str] | list[StepAnswer]:
        event = _event(event_id)
        if event is None:
            return [_bad_event(box)]
        if not 1 <= len(tubes) <= MAX_TUBES_PER_STEP:
            return [
                StepAnswer.refused(
                    box,
                    StepReason.INVALID_COUNT,
                    f"send 1..{MAX_TUBES_PER_STEP} tubes per call",
                )
            ]
        parsed = self._box(box, device)
        if isinstance(parsed, StepAnswer):
            return [parsed]
        return event, parsed

    def _box(self, box: str, device: AuthenticatedDevice) -> str | StepAnswer:
        try:
            code = parse_box_code(box)
        except BarcodeError as exc:
            return StepAnswer.refused(box, StepReason.INVALID_BOX_BARCODE, str(exc))
        if code.district not in self._city.districts:
            return StepAnswer.refused(
                box, StepReason.OTHER_DISTRICT, "unknown district"
            )
        if device.role is not Role.LAB and code.district != device.district:
            return _other_district(code.code, code.district)
        return code.code

    async def _send(
        self, district: str, key: str, steps: list[Step]
    ) -> list[list[StepAnswer]]:
        shard = self._router.shard_for(district, key.encode())
        try:
            return await self._pool.apply(self._router.host_for(shard), shard, steps)
        except (StoreUnavailable, ShardUnavailable, StoreError) as exc:
            return [[self._try_again(key, exc)] for _ in steps]

    def _try_again(self, code: str, exc: Exception) -> StepAnswer:
        reason = (
            StepReason.SHARD_UNAVAILABLE
            if isinstance(exc, ShardUnavailable)
            else StepReason.STORE_UNAVAILABLE
        )
        log.warning("journey_step_deferred", code=code, error=type(exc).__name__)
        return StepAnswer(StepStatus.TRY_AGAIN, code, reason, "not recorded; resend")


def _event(text: str) -> bytes | None:
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        return None


def _bad_event(code: str) -> StepAnswer:
    return StepAnswer.refused(
        code, StepReason.INVALID_EVENT_ID, "event_id must be a UUID"
    )


def _other_district(code: str, district: str) -> StepAnswer:
    return StepAnswer.refused(
        code, StepReason.OTHER_DISTRICT, f"{code} belongs to district {district}"
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
