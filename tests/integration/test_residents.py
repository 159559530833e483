"""Resident look-ups over real gRPC: records sent through the gateway, audit, limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.config import REPO_ROOT, Settings
from engine.lookup_clients import CLIENT_HEADER, make_client_token
from engine.pii import Keyring, PiiCipher
from engine.stack import prepare_store
from engine.store import CqlStore
from perf.device import send_all
from perf.people import PersonFactory
from sieve.v1 import ingest_pb2, residents_pb2, residents_pb2_grpc
from tests.conftest import GatewayThread, free_port
from tests.helpers import allocate_tubes, device_token, make_registrations

pytestmark = pytest.mark.integration

SITE = "120101-001"
DEVICE = f"{SITE}-D0003"
CLIENTS = ("resident-app", "grid-workers", "limited-app", "other-app", "audit-app")
RATE_PER_S = 2.0
BURST = 4


@pytest.fixture(scope="module")
def settings(cassandra_node: object, keys_file: object) -> Settings:
    """This module's keyspace, with a tight per-client rate to test limiting."""
    result = Settings.from_env(
        None,
        cql_keyspace=f"sieve_test_{uuid.uuid4().hex[:10]}",
        keys_file=keys_file,
        gateway_port=free_port(),
        var_dir=REPO_ROOT / "var",
        lookup_clients=CLIENTS,
        lookup_rate_per_s=RATE_PER_S,
        lookup_burst=BURST,
    )
    prepare_store(result)
    return result


@pytest.fixture(scope="module")
def sent(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> list[ingest_pb2.Registration]:
    """Twenty registrations stored through the real gateway."""
    tubes = allocate_tubes(store, SITE, 20)
    regs = make_registrations(20, SITE, tubes=tubes, seed=41)

    async def send() -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            report = await send_all(
                channel, DEVICE, device_token(settings, DEVICE), regs, window=8
            )
        assert {ingest_pb2.STORED} == {a.status for a in report.acks.values()}

    asyncio.run(send())
    return regs


@pytest.fixture(scope="module")
def channel(gateway: GatewayThread) -> Iterator[grpc.Channel]:
    """A plain blocking channel to the gateway."""
    with grpc.insecure_channel(gateway.address) as opened:
        yield opened


def _stub(channel: grpc.Channel) -> residents_pb2_grpc.ResidentsStub:
    return residents_pb2_grpc.ResidentsStub(channel)  # type: ignore[no-untyped-call]


def _metadata(settings: Settings, client: str) -> tuple[tuple[str, str], ...]:
    key = Keyring.load(settings.keys_file).device_token
    token = make_client_token(key, client)
    return ((CLIENT_HEADER, client), ("authorization", f"Bearer {token}"))


def _lookup(
    channel: grpc.Channel, settings: Settings, client: str, number: str, doc: int = 1
) -> residents_pb2.LookupResponse:
    request = residents_pb2.LookupRequest(
        document_type=doc,  # type: ignore[arg-type]
        document_number=number,
    )
    reply: residents_pb2.LookupResponse = _stub(channel).Lookup(
        request,
        metadata=_metadata(settings, client),
        timeout=10,
    )
    return reply


def test_lookup_returns_the_records_sent_through_the_gateway(
    settings: Settings, channel: grpc.Channel, sent: list[ingest_pb2.Registration]
) -> None:
    """Round, time, site and tube of each registration come back; no result."""
    for reg in sent[:3]:
        reply = _lookup(channel, settings, "resident-app", reg.document_number)

        assert reply.found is True
        assert 1 == len(reply.records)
        record = reply.records[0]
        assert (reg.round, reg.site_id, reg.tube_barcode) == (
            record.round,
            record.site_id,
            record.tube_barcode,
        )
        assert reg.captured_at_ms == record.captured_at_ms
        assert "120101" == record.district
        assert record.site_name
        assert reply.masked_number.startswith(reg.document_number[:6])
        assert reg.document_number not in str(reply)
    fields = set(residents_pb2.SamplingRecord.DESCRIPTOR.fields_by_name)
    assert not {"result", "test_result", "name"} & fields


def test_never_sampled_id_gets_only_no_record(
    settings: Settings, channel: grpc.Channel, sent: list[ingest_pb2.Registration]
) -> None:
    """A valid number never sent: found is false and nothing else is said."""
    stranger = PersonFactory(999_001).person().id_number
    assert stranger not in {reg.document_number for reg in sent}

    reply = _lookup(channel, settings, "resident-app", stranger)

    assert reply.found is False
    assert [] == list(reply.records)
    assert {"found", "masked_number"} >= {f.name for f, _ in reply.ListFields()}


@pytest.mark.parametrize(
    ("doc", "number", "words"),
    [
        (1, "12010119900307001", "18 characters"),
        (1, "120101199003070019", "check character"),
        (0, "120101199003070012", "document_type"),
        (1, "", "empty"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(
    settings: Settings, channel: grpc.Channel, doc: int, number: str, words: str
) -> None:
    """INVALID_ARGUMENT naming the broken rule, never echoing the number."""
    with pytest.raises(grpc.RpcError) as caught:
        _lookup(channel, settings, "grid-workers", number, doc)

    assert grpc.StatusCode.INVALID_ARGUMENT == caught.value.code()
    assert words in (caught.value.details() or "")


def test_unknown_clients_and_wrong_tokens_are_refused(
    settings: Settings, channel: grpc.Channel
) -> None:
    """UNAUTHENTICATED for an unlisted client, a bad token or a device token."""
    request = residents_pb2.LookupRequest(
        document_type=ingest_pb2.RESIDENT_ID_CARD,
        document_number=PersonFactory(3).person().id_number,
    )
    attempts = [
        _metadata(settings, "not-listed"),
        ((CLIENT_HEADER, "resident-app"), ("authorization", "Bearer nope")),
        (
            (CLIENT_HEADER, "resident-app"),
            ("authorization", f"Bearer {device_token(settings, 'resident-app')}"),
        ),
        (),
    ]
    for metadata in attempts:
        with pytest.raises(grpc.RpcError) as caught:
            _stub(channel).Lookup(request, metadata=metadata, timeout=10)
        assert grpc.StatusCode.UNAUTHENTICATED == caught.value.code()


def test_rate_limit_refuses_over_the_limit_and_recovers(
    settings: Settings, channel: grpc.Channel, sent: list[ingest_pb2.Registration]
) -> None:
    """Past the burst: RESOURCE_EXHAUSTED with retry-after-ms; after it, served."""
    number = sent[0].document_number
    for _ in range(BURST):
        assert _lookup(channel, settings, "limited-app", number).found

    with pytest.raises(grpc.RpcError) as caught:
        _lookup(channel, settings, "limited-app", number)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED == caught.value.code()
    trailers = dict(caught.value.trailing_metadata() or ())
    retry_after_ms = int(trailers["retry-after-ms"])
    assert 0 < retry_after_ms <= 1000 / RATE_PER_S
    assert _lookup(channel, settings, "other-app", number).found

    time.sleep(retry_after_ms / 1000 + 0.05)

    assert _lookup(channel, settings, "limited-app", number).found


def test_each_lookup_writes_audit_rows_without_the_number(
    settings: Settings,
    channel: grpc.Channel,
    store: CqlStore,
    cipher: PiiCipher,
    sent: list[ingest_pb2.Registration],
) -> None:
    """Who looked up which hash and when, per person and per actor; masked only."""
    number = sent[5].document_number
    stranger = PersonFactory(999_002).person().id_number
    digest = cipher.lookup_hash(1, number)
    before_ms = int(time.time() * 1000) - 1000

    _lookup(channel, settings, "audit-app", number)
    _lookup(channel, settings, "audit-app", number)
    _lookup(channel, settings, "audit-app", stranger)

    by_person = store.execute_sync(
        "SELECT * FROM {ks}.lookup_audit_by_person WHERE doc_hash = %s", (digest,)
    )
    assert 2 == len(by_person)
    assert {("client", "audit-app")} == {(r.actor_kind, r.actor) for r in by_person}
    day = dt.datetime.now(dt.UTC).date()
    by_actor = store.execute_sync(
        "SELECT * FROM {ks}.lookup_audit_by_actor WHERE actor = %s AND day = %s",
        ("audit-app", day),
    )
    assert 3 == len(by_actor)
    assert {digest, cipher.lookup_hash(1, stranger)} == {r.doc_hash for r in by_actor}
    for row in [*by_person, *by_actor]:
        assert row.at.replace(tzinfo=dt.UTC).timestamp() * 1000 >= before_ms
        assert number not in repr(row) and stranger not in repr(row)
        assert row.masked.endswith(row.masked[-4:]) and "*" in row.masked


def test_health_and_reflection_list_the_residents_service(
    channel: grpc.Channel,
) -> None:
    """The gateway reports the Residents service SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]

    reply = stub.Check(
        health_pb2.HealthCheckRequest(service="sieve.v1.Residents"), timeout=5
    )

    assert health_pb2.HealthCheckResponse.SERVING == reply.status
