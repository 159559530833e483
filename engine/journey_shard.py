"""Applies journey steps on the shard that owns their tube or box.

Every step is idempotent. A stage's time is fixed the first time it is
recorded: the tube's column (``sealed_at``, ``dispatched_at``, ...) is written
before the per-minute stage row and the event, and a retry reads the column
back, so a stage is counted once, in one minute, however often it is resent.
A trip's state moves last, so an interrupted step is redone whole.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from engine.barcodes import BarcodeError, parse_tube_code
from engine.box_keeper import BoxKeeper, Trip, TripState, to_ms
from engine.counters import minute_of
from engine.exceptions import StoreUnavailable
from engine.journey import (
    DispatchBox,
    LoadTubes,
    OpenBox,
    ReceiveBox,
    RecordResult,
    SealTube,
    Step,
    StepAnswer,
    StepReason,
)
from engine.journey_statements import JourneyStatements
from engine.keyed_locks import KeyedLocks
from engine.store import CqlStore
from engine.tube_book import TubeBook

__all__ = ["JourneyShard"]

log = structlog.get_logger()


class JourneyShard:
    """The journey steps of one shard host's tubes and boxes.

    Args:
        store: connected store.
        tubes: the host's tube states (shared with registration binding).
        boxes: the host's box trips.
        concurrency: statements in flight at once.
    """

    def __init__(
        self,
        store: CqlStore,
        tubes: TubeBook,
        boxes: BoxKeeper,
        *,
        concurrency: int = 64,
    ) -> None:
        self._sql = JourneyStatements(store, concurrency=concurrency)
        self._tubes = tubes
        self._boxes = boxes
        self._locks = KeyedLocks()
        self.num_steps = 0
        self.num_refused = 0

    async def apply(self, step: Step) -> list[StepAnswer]:
        """Apply one step; the answer list has one entry, or for steps over
        several tubes the box's answer first and then one per tube.

        Raises:
            StoreUnavailable: the store did not take it; resend the same step.
        """
        key = step.tube if isinstance(step, SealTube | RecordResult) else step.box
        async with self._locks.hold(key):
            answers = await self._apply(step)
        self.num_steps += 1
        self.num_refused += sum(a.reason is not None for a in answers)
        return answers

    async def _apply(self, step: Step) -> list[StepAnswer]:
        if isinstance(step, SealTube):
            return [await self._seal(step)]
        if isinstance(step, RecordResult):
            return [await self._result(step)]
        if isinstance(step, OpenBox):
            return [await self._open(step)]
        if isinstance(step, LoadTubes):
            return await self._load(step)
        if isinstance(step, DispatchBox):
            return [await self._dispatch(step)]
        return await self._receive(step)

    # Tubes -----------------------------------------------------------------

    async def _seal(self, step: SealTube) -> StepAnswer:
        await self._tubes.load([step.tube])
        state = self._tubes.get(step.tube)
        if state is None:
            return StepAnswer.refused(
                step.tube, StepReason.TUBE_UNKNOWN, "tube was never printed"
            )
        if state.sealed:
            return StepAnswer.already(step.tube, "tube was already sealed")
        if not state.members:
            return StepAnswer.refused(
                step.tube, StepReason.TUBE_EMPTY, "no resident is bound to the tube"
            )
        if state.collector not in (None, step.collector):
            return StepAnswer.refused(
                step.tube, StepReason.TUBE_IN_USE, "another collector fills the tube"
            )
        # Refuse bindings from now on; undone below if the write fails.
        self._tubes.mark_sealed(step.tube, step.sealed_at_ms)
        at = step.sealed_at_ms
        waited = None if state.first_bound_ms is None else at - state.first_bound_ms
        assert state.round is not None  # bound tubes always have one
        first = [
            self._sql.bind(
                "stage",
                state.round,
                step.district,
                "sealed",
                minute_of(at),
                step.tube,
                waited,
            ),
            self._sql.event(step.tube, step.event_id, "SEALED", at, step.device),
        ]
        try:
            await self._sql.write(first)
            await self._sql.write(
                [self._sql.bind("seal", at, step.collector, step.tube)]
            )
        except StoreUnavailable:
            self._tubes.mark_sealed(step.tube, None)
            raise
        return StepAnswer.done(step.tube)

    async def _result(self, step: RecordResult) -> StepAnswer:
        rows = await self._sql.tube_rows([step.tube])
        row = rows.get(step.tube)
        if row is None or row.round is None:
            return StepAnswer.refused(
                step.tube, StepReason.TUBE_UNKNOWN, "no sample was bound to the tube"
            )
        latest = await self._sql.latest_result(step.tube)
        if latest == step.result:
            return StepAnswer.already(step.tube, "same result already recorded")
        tested_at = to_ms(row.tested_at) or step.tested_at_ms
        received = to_ms(row.received_at)
        waited = None if received is None else tested_at - received
        district, round_no = row.district, row.round
        await self._sql.write(
            [self._sql.bind("tested", tested_at, step.result, step.tube)]
        )
        second = [
            self._sql.bind(
                "stage",
                round_no,
                district,
                "tested",
                minute_of(tested_at),
                step.tube,
                waited,
            ),
            self._sql.event(
                step.tube,
                _result_event(step),
                "RESULT",
                step.at_ms,
                step.device,
                detail=step.result,
            ),
        ]
        if step.result == "POSITIVE":
            second.append(
                self._sql.bind(
                    "stage",
                    round_no,
                    district,
                    "positive",
                    minute_of(tested_at),
                    step.tube,
                    waited,
                )
            )
            second.append(
                self._sql.bind(
                    "positive", round_no, district, step.tube, tested_at, step.lab
                )
            )
        else:
            # TODO: a tube corrected away from POSITIVE stays counted in the
            # per-minute positive stage; only the positive list is corrected.
            second.append(self._sql.bind("not_positive", round_no, district, step.tube))
        await self._sql.write(second)
        await self._sql.write(
            [
                self._sql.bind(
                    "result",
                    step.tube,
                    step.at_ms,
                    uuid.uuid4(),
                    step.result,
                    step.lab,
                    round_no,
                    district,
                )
            ]
        )
        return StepAnswer.done(step.tube, "corrected" if latest is not None else "")

    # Boxes -----------------------------------------------------------------

    async def _open(self, step: OpenBox) -> StepAnswer:
        trip = await self._boxes.latest(step.box)
        if trip is not None and trip.opened_event == step.event_id:
            return StepAnswer.already(step.box, f"trip {trip.trip} already open")
        if trip is not None and trip.in_use:
            return StepAnswer.refused(
                step.box, StepReason.BOX_IN_USE, f"box is on trip {trip.trip}"
            )
        number = 1 if trip is None else trip.trip + 1
        new = Trip(
            step.box,
            number,
            step.round,
            step.district,
            step.site,
            TripState.OPEN,
            opened_event=step.event_id,
        )
        try:
            await self._sql.write(
                [
                    self._sql.bind(
                        "trip_district", step.round, step.district, step.box, number
                    ),
                    self._sql.bind(
                        "open",
                        step.box,
                        number,
                        step.round,
                        step.district,
                        step.site,
                        TripState.OPEN,
                        step.device,
                        step.at_ms,
                        uuid.UUID(bytes=step.event_id),
                    ),
                ]
            )
        except StoreUnavailable:
            self._boxes.forget(step.box)
            raise
        self._boxes.put(new)
        return StepAnswer.done(step.box, f"trip {number}")

    async def _load(self, step: LoadTubes) -> list[StepAnswer]:
        trip = await self._boxes.latest(step.box)
        if trip is None or trip.state != TripState.OPEN:
            box = StepAnswer.refused(
                step.box, StepReason.BOX_NOT_OPEN, "open the box before loading"
            )
            return [box] + [
                StepAnswer.refused(t, StepReason.BOX_NOT_OPEN, "box not open")
                for t in step.tubes
            ]
        answers, fresh = [], []
        for code in step.tubes:
            checked = _check_tube(code, trip.district)
            if checked is not None:
                answers.append(checked)
            elif code in trip.manifest:
                answers.append(StepAnswer.already(code, "already in this box"))
            else:
                answers.append(StepAnswer.done(code))
                fresh.append(code)
        statements = []
        for code in fresh:
            statements += [
                self._sql.bind("load", step.box, trip.trip, code, step.at_ms),
                self._sql.bind("boxed", step.box, trip.trip, step.at_ms, code),
                self._sql.event(
                    code, step.event_id, "BOXED", step.at_ms, step.device, box=step.box
                ),
            ]
        await self._sql.write(statements)
        trip.manifest.update(fresh)
        return [StepAnswer.done(step.box, f"{len(trip.manifest)} tubes"), *answers]

    async def _dispatch(self, step: DispatchBox) -> StepAnswer:
        trip = await self._boxes.latest(step.box)
        if trip is not None and trip.dispatched_event == step.event_id:
            return StepAnswer.already(step.box, "already dispatched")
        if trip is None or trip.state != TripState.OPEN:
            return StepAnswer.refused(
                step.box, StepReason.BOX_NOT_OPEN, "box has no open trip"
            )
        if not trip.manifest:
            return StepAnswer.refused(step.box, StepReason.BOX_EMPTY, "box is empty")
        rows = await self._sql.tube_rows(trip.manifest)
        first, second = [], []
        for code in sorted(trip.manifest):
            row = rows.get(code)
            at = to_ms(row.dispatched_at) if row is not None else None
            if at is None:
                at = step.at_ms
                first.append(self._sql.bind("dispatched", at, code))
            sealed = to_ms(row.sealed_at) if row is not None else None
            round_no = row.round if row is not None and row.round else trip.round
            second += [
                self._sql.bind(
                    "stage",
                    round_no,
                    parse_tube_code(code).district,
                    "dispatched",
                    minute_of(at),
                    code,
                    None if sealed is None else at - sealed,
                ),
                self._sql.event(
                    code,
                    step.event_id,
                    "DISPATCHED",
                    at,
                    step.device,
                    box=step.box,
                    detail=f"{step.vehicle} to {step.lab}",
                ),
            ]
        await self._sql.write(first)
        await self._sql.write(second)
        await self._sql.write(
            [
                self._sql.bind(
                    "dispatch",
                    TripState.IN_TRANSIT,
                    step.vehicle,
                    step.lab,
                    step.at_ms,
                    uuid.UUID(bytes=step.event_id),
                    step.box,
                    trip.trip,
                )
            ]
        )
        trip.state = TripState.IN_TRANSIT
        trip.dispatched_event = step.event_id
        trip.lab = step.lab
        return StepAnswer.done(step.box, f"{len(trip.manifest)} tubes to {step.lab}")

    async def _receive(self, step: ReceiveBox) -> list[StepAnswer]:
        trip = await self._boxes.latest(step.box)
        if trip is None:
            # TODO: a box that never left a site is refused, so what the lab
            # scanned is not recorded; it should be, as a finding.
            return [
                StepAnswer.refused(
                    step.box, StepReason.BOX_UNKNOWN, "box never left a site"
                )
            ] + [
                StepAnswer.refused(t, StepReason.BOX_UNKNOWN, "box unknown")
                for t in step.tubes
            ]
        if trip.received_event == step.event_id:
            return [StepAnswer.already(step.box, "receipt already recorded")] + [
                StepAnswer.already(t) for t in step.tubes
            ]
        again = trip.state == TripState.RECEIVED
        answers, good = [], []
        for code in step.tubes:
            checked = _check_tube(code, None)
            if checked is not None:
                answers.append(checked)
            else:
                answers.append(StepAnswer.done(code))
                good.append(code)
        rows = await self._sql.tube_rows(good)
        event = uuid.UUID(bytes=step.event_id)
        first, second = [], []
        for code in dict.fromkeys(good):
            row = rows.get(code)
            district = parse_tube_code(code).district
            round_no = row.round if row is not None and row.round else trip.round
            site = parse_tube_code(code).site
            first += [
                self._sql.bind(
                    "receipt",
                    round_no,
                    district,
                    code,
                    event,
                    step.box,
                    step.lab,
                    step.at_ms,
                ),
                self._sql.bind("tube_district", round_no, district, site, code),
            ]
            if again:
                continue
            at = to_ms(row.received_at) if row is not None else None
            if at is None:
                at = step.at_ms
                first.append(self._sql.bind("received", at, step.box, step.lab, code))
            first.append(self._sql.bind("unload", at, step.box, trip.trip, code))
            dispatched = to_ms(row.dispatched_at) if row is not None else None
            second += [
                self._sql.bind(
                    "stage",
                    round_no,
                    district,
                    "received",
                    minute_of(at),
                    code,
                    None if dispatched is None else at - dispatched,
                ),
                self._sql.event(
                    code,
                    step.event_id,
                    "RECEIVED",
                    at,
                    step.device,
                    box=step.box,
                    detail=step.lab,
                ),
            ]
        await self._sql.write(first)
        await self._sql.write(second)
        if again:
            note = "box was already received; this receipt is recorded as well"
            return [StepAnswer.done(step.box, note), *answers]
        await self._sql.write(
            [
                self._sql.bind(
                    "receive",
                    TripState.RECEIVED,
                    step.at_ms,
                    step.device,
                    event,
                    step.lab,
                    step.box,
                    trip.trip,
                )
            ]
        )
        trip.state = TripState.RECEIVED
        trip.received_event = step.event_id
        short = len(trip.manifest - set(good))
        note = f"{short} loaded tubes missing" if short else ""
        return [StepAnswer.done(step.box, note), *answers]

    def stats(self) -> dict[str, Any]:
        """Counters for metrics."""
        return {
            "num_journey_steps": self.num_steps,
            "num_journey_refused": self.num_refused,
        }


def _result_event(step: RecordResult) -> bytes:
    # The same upload resent names the same event, so it adds no row.
    name = f"{step.tube}|{step.result}|{step.tested_at_ms}|{step.lab}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).bytes


def _check_tube(code: str, district: str | None) -> StepAnswer | None:
    try:
        parsed = parse_tube_code(code)
    except BarcodeError as exc:
        return StepAnswer.refused(code, StepReason.INVALID_TUBE_BARCODE, str(exc))
    if district is not None and parsed.district != district:
        return StepAnswer.refused(
            code, StepReason.OTHER_DISTRICT, f"tube is of district {parsed.district}"
        )
    return None
