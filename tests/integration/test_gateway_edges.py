"""Gateway edges over real gRPC: bad input, bad devices, bad bytes, PII at rest."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import grpc
import pytest

from engine.barcodes import make_tube_code
from engine.config import REPO_ROOT, Settings
from engine.pii import PiiCipher
from engine.store import CqlStore
from perf.device import DeviceReport, send_all
from sieve.v1 import ingest_pb2
from tests.conftest import GatewayThread
from tests.helpers import (
    INDEX_TABLES,
    allocate_tubes,
    device_token,
    make_registrations,
    stored_ids,
)

pytestmark = pytest.mark.integration

SITE = "120104-003"
DEVICE = "120104-003-D0001"


def _bad_variants(store: CqlStore) -> list[tuple[ingest_pb2.Registration, str]]:
    tubes = allocate_tubes(store, SITE, 12, capacity=1)
    base = make_registrations(12, SITE, tubes=tubes, per_tube=1, seed=901)
    changes = [
        ({"document_number": "110105194912310021"}, "INVALID_DOCUMENT_NUMBER"),
        ({"document_number": "11010519491331002X"}, "INVALID_DOCUMENT_NUMBER"),
        ({"document_number": "11010530001231002X"}, "INVALID_DOCUMENT_NUMBER"),
        ({"document_number": "99010519491231002X"}, "INVALID_DOCUMENT_NUMBER"),
        ({"document_number": "1101051949123100"}, "INVALID_DOCUMENT_NUMBER"),
        ({"name": "张3"}, "INVALID_NAME"),
        ({"name": ""}, "INVALID_NAME"),
        ({"name": "王" * 31}, "INVALID_NAME"),
        ({"site_id": "999999-001"}, "UNKNOWN_SITE"),
        ({"site_id": "120101-001"}, "SITE_NOT_ALLOWED"),
        ({"tube_barcode": "?"}, "INVALID_TUBE_BARCODE"),
        ({"registration_id": "nope"}, "INVALID_REGISTRATION_ID"),
    ]
    variants = []
    for registration, (fields, reason) in zip(base, changes, strict=True):
        for name, value in fields.items():
            setattr(registration, name, value)
        variants.append((registration, reason))
    return variants


async def _send(settings: Settings, address: str, regs: list, device: str = DEVICE):
    async with grpc.aio.insecure_channel(address) as channel:
        return await send_all(
            channel,
            device,
            device_token(settings, device),
            regs,
            window=8,
            deadline_s=60,
        )


def test_invalid_registrations_are_rejected_with_reason_and_not_stored(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """Each bad field gets REJECTED with its reason; none of them is stored."""
    variants = _bad_variants(store)
    valid = make_registrations(1, SITE, tubes=allocate_tubes(store, SITE, 1), seed=902)

    report = asyncio.run(
        _send(settings, gateway.address, [r for r, _ in variants] + valid)
    )

    for registration, reason in variants:
        ack = report.acks[registration.registration_id]
        assert ingest_pb2.REJECTED == ack.status
        assert reason == ingest_pb2.RejectReason.Name(ack.reason)
        assert ack.message
    assert ingest_pb2.STORED == report.acks[valid[0].registration_id].status
    real_ids = [r.registration_id for r, _ in variants if _is_uuid(r.registration_id)]
    assert {0} == set(stored_ids(store, real_ids).values())
    assert {1} == set(stored_ids(store, [valid[0].registration_id]).values())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("device", "token"),
    [
        ("999999-001-D0000", None),  # unknown device
        ("120101-001-D0499", None),  # revoked in the city file
        (DEVICE, "not-the-token"),  # wrong token
    ],
)
def test_unknown_revoked_or_wrong_token_devices_are_unauthenticated(
    settings: Settings, gateway: GatewayThread, device: str, token: str | None
) -> None:
    """Devices that cannot prove themselves get UNAUTHENTICATED."""
    site = device.rsplit("-D", 1)[0]
    registrations = make_registrations(
        1, site, tubes=[make_tube_code(site, 9_999_999)], seed=903
    )

    async def attempt() -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            await send_all(
                channel,
                device,
                token or device_token(settings, device),
                registrations,
                deadline_s=20,
            )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(attempt())
    assert grpc.StatusCode.UNAUTHENTICATED == caught.value.code()


def test_malformed_message_ends_only_that_stream(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """Garbage bytes get INVALID_ARGUMENT while another device is fully served."""
    healthy = make_registrations(
        300, "120104-004", tubes=allocate_tubes(store, "120104-004", 300), seed=904
    )

    async def scenario() -> tuple[grpc.StatusCode, DeviceReport]:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            raw = channel.stream_stream(
                "/sieve.v1.Ingest/Register",
                request_serializer=None,
                response_deserializer=None,
            )
            other = asyncio.ensure_future(
                send_all(
                    channel,
                    "120104-004-D0002",
                    device_token(settings, "120104-004-D0002"),
                    healthy,
                    window=4,
                )
            )
            call = raw(
                metadata=(
                    ("x-sieve-device", DEVICE),
                    ("authorization", f"Bearer {device_token(settings, DEVICE)}"),
                )
            )
            await call.write(b"\xff\xff\xff\xff not protobuf")
            await call.done_writing()
            code = await call.code()
            return code, await other

    code, report = asyncio.run(scenario())

    assert grpc.StatusCode.INVALID_ARGUMENT == code
    statuses = {ack.status for ack in report.acks.values()}
    assert {ingest_pb2.STORED} == statuses
    assert len(healthy) == len(report.acks)


def test_store_holds_no_plaintext_name_or_id(
    settings: Settings, gateway: GatewayThread, store: CqlStore, cipher: PiiCipher
) -> None:
    """Raw rows of every table contain neither name nor ID; sealed fields open."""
    registrations = make_registrations(
        20, SITE, tubes=allocate_tubes(store, SITE, 20), seed=905
    )
    report = asyncio.run(_send(settings, gateway.address, registrations))
    assert {ingest_pb2.STORED} == {a.status for a in report.acks.values()}

    secrets = [r.name.encode() for r in registrations]
    secrets += [r.document_number.encode() for r in registrations]
    for table in ("registrations", *INDEX_TABLES):
        for row in store.execute_sync(f"SELECT * FROM {{ks}}.{table}"):
            raw = b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
            assert not any(secret in raw for secret in secrets), table

    first = registrations[0]
    row = store.execute_sync(
        "SELECT name_sealed, doc_sealed FROM {ks}.registrations"
        " WHERE registration_id = %s",
        (uuid.UUID(first.registration_id),),
    )[0]
    associated = uuid.UUID(first.registration_id).bytes
    assert first.name == cipher.open(row.name_sealed, associated)
    assert first.document_number == cipher.open(row.doc_sealed, associated)


def test_grpcurl_lists_services_and_reads_health(gateway: GatewayThread) -> None:
    """grpcurl (built from source) sees the services by reflection; health SERVING."""
    grpcurl = REPO_ROOT / "var" / "bin" / "grpcurl"
    assert grpcurl.exists(), "make test builds grpcurl into var/bin"

    listing = subprocess.run(
        [str(grpcurl), "-plaintext", gateway.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    health = subprocess.run(
        [
            str(grpcurl),
            "-plaintext",
            "-d",
            '{"service": "sieve.v1.Ingest"}',
            gateway.address,
            "grpc.health.v1.Health/Check",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout

    assert {"sieve.v1.Ingest", "sieve.v1.Operations", "grpc.health.v1.Health"} <= set(
        listing
    )
    assert '"SERVING"' in health
