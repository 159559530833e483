"""Journey steps over real gRPC: roles, tube rules, box trips, results."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from engine.barcodes import make_box_code, make_tube_code
from engine.config import Settings
from engine.store import CqlStore
from perf.device import send_all
from sieve.v1 import ingest_pb2, journey_pb2, journey_pb2_grpc
from tests.conftest import GatewayThread
from tests.helpers import allocate_tubes, device_token, make_registrations

pytestmark = pytest.mark.integration

SITE = "120113-001"
DISTRICT = "120113"
COLLECTOR_DEVICE = f"{SITE}-D0007"
PRINTER = f"{SITE}-P00"
TRANSPORTER = f"{DISTRICT}-T001"
LAB = "LAB02-L01"


def _call(settings: Settings, address: str, device: str, method: str, request: Any):
    async def run() -> Any:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = journey_pb2_grpc.JourneyStub(channel)
            metadata = (
                ("x-sieve-device", device),
                ("authorization", f"Bearer {device_token(settings, device)}"),
            )
            return await getattr(stub, method)(request, metadata=metadata)

    return asyncio.run(run())


def _register(settings: Settings, address: str, registrations: list) -> dict:
    async def run() -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            report = await send_all(
                channel,
                COLLECTOR_DEVICE,
                device_token(settings, COLLECTOR_DEVICE),
                registrations,
                window=1,
                deadline_s=60,
            )
        return report.acks

    return asyncio.run(run())


def _status(reply: Any) -> str:
    name = journey_pb2.StepStatus.Name(reply.status)
    if reply.reason:
        return f"{name}:{journey_pb2.StepReason.Name(reply.reason)}"
    return name


def _seal(settings: Settings, address: str, tube: str, event: str, who: str = "C1"):
    request = journey_pb2.SealTubeRequest(
        event_id=event, tube_barcode=tube, collector_id=who, sealed_at_ms=0
    )
    return _call(settings, address, COLLECTOR_DEVICE, "SealTube", request)


def test_devices_may_make_only_their_roles_calls(
    settings: Settings, gateway: GatewayThread
) -> None:
    """Wrong-role calls get PERMISSION_DENIED; a printer allocates its site's."""
    address = gateway.address
    refused = [
        (COLLECTOR_DEVICE, "OpenBox", journey_pb2.OpenBoxRequest()),
        (LAB, "SealTube", journey_pb2.SealTubeRequest()),
        (TRANSPORTER, "UploadResults", journey_pb2.UploadResultsRequest()),
        (PRINTER, "ReceiveBox", journey_pb2.ReceiveBoxRequest()),
        (COLLECTOR_DEVICE, "AllocateTubes", journey_pb2.AllocateTubesRequest()),
    ]
    for device, method, request in refused:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _call(settings, address, device, method, request)
        assert grpc.StatusCode.PERMISSION_DENIED == caught.value.code(), method

    reply = _call(
        settings,
        address,
        PRINTER,
        "AllocateTubes",
        journey_pb2.AllocateTubesRequest(count=3, capacity=20),
    )
    assert "DONE" == _status(reply.reply)
    assert SITE == reply.site
    assert 3 == len(reply.codes)
    assert all(code.startswith("T120113001") for code in reply.codes)
    bad = _call(
        settings,
        address,
        PRINTER,
        "AllocateTubes",
        journey_pb2.AllocateTubesRequest(count=3, capacity=7),
    )
    assert "REFUSED:STEP_INVALID_CAPACITY" == _status(bad.reply)

    # A transporter may not open an ingest stream either.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(_stream_as(settings, address, TRANSPORTER))
    assert grpc.StatusCode.PERMISSION_DENIED == caught.value.code()


async def _stream_as(settings: Settings, address: str, device: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await send_all(
            channel,
            device,
            device_token(settings, device),
            make_registrations(1, SITE, tubes=["x"], seed=1),
            deadline_s=20,
        )


def test_tube_rules_are_enforced_at_binding_and_sealing(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """Unknown, full, sealed and other-collector tubes refuse residents."""
    address = gateway.address
    (single,) = allocate_tubes(store, SITE, 1, capacity=1)
    (pooled,) = allocate_tubes(store, SITE, 10, capacity=10)
    (empty,) = allocate_tubes(store, SITE, 10, capacity=10)
    never = make_tube_code(SITE, 9_999_998)

    first, second = make_registrations(2, SITE, tubes=[single], per_tube=2, seed=71)
    stranger = make_registrations(1, SITE, tubes=[never], seed=72)
    mine = make_registrations(3, SITE, tubes=[pooled], seed=73, collector="C1")
    other = make_registrations(1, SITE, tubes=[pooled], seed=74, collector="C2")

    acks = _register(settings, address, [first, second, *stranger, *mine, *other])

    assert ingest_pb2.STORED == acks[first.registration_id].status
    full = acks[second.registration_id]
    assert (ingest_pb2.REJECTED, ingest_pb2.TUBE_FULL) == (full.status, full.reason)
    assert ingest_pb2.TUBE_UNKNOWN == acks[stranger[0].registration_id].reason
    assert {ingest_pb2.STORED} == {acks[r.registration_id].status for r in mine}
    assert ingest_pb2.TUBE_IN_USE == acks[other[0].registration_id].reason

    event = str(uuid.uuid4())
    assert "DONE" == _status(_seal(settings, address, pooled, event))
    assert "ALREADY_DONE" == _status(_seal(settings, address, pooled, event))
    assert "REFUSED:STEP_TUBE_EMPTY" == _status(
        _seal(settings, address, empty, str(uuid.uuid4()))
    )
    assert "REFUSED:STEP_TUBE_UNKNOWN" == _status(
        _seal(settings, address, never, str(uuid.uuid4()))
    )
    late = make_registrations(1, SITE, tubes=[pooled], seed=75, collector="C1")
    late_ack = _register(settings, address, late)[late[0].registration_id]
    assert ingest_pb2.TUBE_SEALED == late_ack.reason

    bound = store.execute_sync(
        "SELECT registration_id FROM {ks}.registrations_by_tube WHERE tube = %s",
        (pooled,),
    )
    assert {uuid.UUID(r.registration_id) for r in mine} == {
        row.registration_id for row in bound
    }
    sealed = _stage_rows(store, "sealed")
    assert [pooled] == [row.tube for row in sealed]


def _stage_rows(store: CqlStore, stage: str) -> list[Any]:
    rows = store.execute_sync(
        "SELECT minute, tube FROM {ks}.stage_by_minute WHERE round = 1 AND"
        " district = %s AND stage = %s ALLOW FILTERING",
        (DISTRICT, stage),
    )
    return list(rows)


def test_box_trip_receipt_and_results_are_idempotent(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """A box goes out once at a time; resends and re-uploads change nothing."""
    address = gateway.address
    tubes = allocate_tubes(store, SITE, 20, capacity=10)
    registrations = make_registrations(20, SITE, tubes=tubes, seed=81, collector="C1")
    acks = _register(settings, address, registrations)
    assert {ingest_pb2.STORED} == {a.status for a in acks.values()}
    for tube in tubes:
        assert "DONE" == _status(_seal(settings, address, tube, str(uuid.uuid4())))

    box = make_box_code(DISTRICT, 41)
    opened = str(uuid.uuid4())
    open_box = journey_pb2.OpenBoxRequest(
        event_id=opened, box_barcode=box, round=1, site_id=SITE
    )
    assert "DONE" == _status(_call(settings, address, TRANSPORTER, "OpenBox", open_box))
    assert "ALREADY_DONE" == _status(
        _call(settings, address, TRANSPORTER, "OpenBox", open_box)
    )
    again = journey_pb2.OpenBoxRequest(
        event_id=str(uuid.uuid4()), box_barcode=box, round=1, site_id=SITE
    )
    assert "REFUSED:STEP_BOX_IN_USE" == _status(
        _call(settings, address, TRANSPORTER, "OpenBox", again)
    )
    foreign = make_tube_code("120101-001", 5)
    load = journey_pb2.LoadTubesRequest(
        event_id=str(uuid.uuid4()), box_barcode=box, tube_barcodes=[*tubes, foreign]
    )
    loaded = _call(settings, address, TRANSPORTER, "LoadTubes", load)
    assert ["DONE", "DONE", "REFUSED:STEP_OTHER_DISTRICT"] == [
        _status(item) for item in loaded.items
    ]
    dispatch = journey_pb2.DispatchBoxRequest(
        event_id=str(uuid.uuid4()), box_barcode=box, vehicle="津A12345", lab="LAB02"
    )
    for expected in ("DONE", "ALREADY_DONE"):
        reply = _call(settings, address, TRANSPORTER, "DispatchBox", dispatch)
        assert expected == _status(reply)
    receive = journey_pb2.ReceiveBoxRequest(
        event_id=str(uuid.uuid4()), box_barcode=box, tube_barcodes=tubes
    )
    for expected in ("DONE", "ALREADY_DONE"):
        reply = _call(settings, address, LAB, "ReceiveBox", receive)
        assert expected == _status(reply.reply)
    # Received: the box may start a new trip.
    assert "DONE" == _status(_call(settings, address, TRANSPORTER, "OpenBox", again))

    def upload(result: int) -> Any:
        item = journey_pb2.ResultItem(tube_barcode=tubes[0], result=result)
        request = journey_pb2.UploadResultsRequest(results=[item])
        return _call(settings, address, LAB, "UploadResults", request).items[0]

    assert "DONE" == _status(upload(journey_pb2.NEGATIVE))
    assert "ALREADY_DONE" == _status(upload(journey_pb2.NEGATIVE))
    assert 1 == len(_results(store, tubes[0]))
    assert "DONE" == _status(upload(journey_pb2.POSITIVE))
    assert ["POSITIVE", "NEGATIVE"] == [r.result for r in _results(store, tubes[0])]
    positives = store.execute_sync(
        "SELECT tube FROM {ks}.positive_tubes WHERE round = 1 AND district = %s",
        (DISTRICT,),
    )
    assert [tubes[0]] == [row.tube for row in positives]

    # Each stage counted once per tube, in one minute, despite the resends.
    for stage in ("sealed", "dispatched", "received", "tested"):
        mine = [r.tube for r in _stage_rows(store, stage) if r.tube in tubes]
        expected = [tubes[0]] if stage == "tested" else tubes
        assert sorted(expected) == sorted(mine), stage

    query = journey_pb2.TubeQuery(tube_barcode=tubes[0])
    view = _call(settings, address, LAB, "GetTube", query)
    assert (True, 10, "TESTED", "POSITIVE") == (
        view.known,
        view.bound,
        view.stage,
        view.result,
    )
    stages = [event.stage for event in view.events]
    assert stages[:4] == ["SEALED", "BOXED", "DISPATCHED", "RECEIVED"]
    assert 2 == stages.count("RESULT")


def _results(store: CqlStore, tube: str) -> list[Any]:
    return list(
        store.execute_sync(
            "SELECT result FROM {ks}.tube_results WHERE tube = %s", (tube,)
        )
    )
