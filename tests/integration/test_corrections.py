"""The corrections queue against the real store, gateway and gRPC."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from engine.city import City
from engine.config import Settings
from engine.corrections import (
    CorrectionConflict,
    CorrectionInput,
    CorrectionQueue,
    CorrectionState,
)
from engine.corrections_candidates import CandidateFinder
from engine.corrections_merge import MergeRefused, RegistrationEditor
from engine.documents import check_id_character
from engine.lookup import Actor, RequestInvalid
from engine.lookup_clients import CLIENT_HEADER, make_client_token
from engine.pii import Keyring, PiiCipher
from engine.store import CqlStore
from perf.device import send_all
from perf.people import PersonFactory
from sieve.v1 import ingest_pb2, residents_pb2, residents_pb2_grpc
from tests.conftest import GatewayThread
from tests.helpers import allocate_tubes, device_token, make_registrations

pytestmark = pytest.mark.integration

SITE = "120101-002"
DEVICE = f"{SITE}-D0005"
OPERATOR = Actor("operator", "op-li")
PHONE = "13812345678"


def _misread(number: str) -> str:
    """One body digit misread and the check character recomputed: two edits."""
    digit = str((int(number[14]) + 3) % 10)
    first17 = number[:14] + digit + number[15:17]
    return first17 + check_id_character(first17)


@dataclass
class World:
    """Registrations stored through the gateway, and what each was meant to be."""

    regs: list[ingest_pb2.Registration]
    true_ids: dict[str, str]
    """registration id -> the person's real number, where it was misread."""
    true_names: dict[str, str]


@pytest.fixture(scope="module")
def world(settings: Settings, gateway: GatewayThread, store: CqlStore) -> World:
    """Sixteen registrations; three misread, one flagged by OCR."""
    tubes = allocate_tubes(store, SITE, 16)
    regs = make_registrations(16, SITE, tubes=tubes, seed=77)
    true_ids = {}
    true_names = {}
    misread_id, misread_name, far_id, flagged = regs[0], regs[1], regs[2], regs[3]
    true_ids[misread_id.registration_id] = misread_id.document_number
    misread_id.document_number = _misread(misread_id.document_number)
    true_names[misread_name.registration_id] = misread_name.name
    misread_name.name = "欧阳" + misread_name.name[1:]
    true_ids[far_id.registration_id] = far_id.document_number
    far_id.document_number = PersonFactory(4242).person().id_number
    true_ids[flagged.registration_id] = flagged.document_number
    flagged.document_number = PersonFactory(4343).person().id_number

    async def send() -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            report = await send_all(
                channel, DEVICE, device_token(settings, DEVICE), regs, window=8
            )
        assert {ingest_pb2.STORED} == {a.status for a in report.acks.values()}

    asyncio.run(send())
    return World(regs=regs, true_ids=true_ids, true_names=true_names)


@pytest.fixture(scope="module")
def city(gateway: GatewayThread) -> City:
    """The city the gateway serves."""
    return gateway.stack.city


@pytest.fixture
def queue(store: CqlStore, cipher: PiiCipher, city: City) -> CorrectionQueue:
    """The queue on the module's keyspace."""
    return CorrectionQueue(store, cipher, city, RegistrationEditor(store, cipher))


@pytest.fixture
def finder(store: CqlStore, cipher: PiiCipher, city: City) -> CandidateFinder:
    """The candidate search on the module's keyspace."""
    return CandidateFinder(store, cipher, city)


@pytest.fixture(scope="module")
def stub(gateway: GatewayThread) -> Iterator[residents_pb2_grpc.ResidentsStub]:
    """A Residents client stub."""
    with grpc.insecure_channel(gateway.address) as channel:
        yield residents_pb2_grpc.ResidentsStub(channel)  # type: ignore[no-untyped-call]


def _metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    token = make_client_token(
        Keyring.load(settings.keys_file).device_token, "resident-app"
    )
    return ((CLIENT_HEADER, "resident-app"), ("authorization", f"Bearer {token}"))


def _submit(
    stub: residents_pb2_grpc.ResidentsStub,
    settings: Settings,
    reg: ingest_pb2.Registration,
    *,
    name: str,
    number: str,
    phone: str = PHONE,
    site: str = SITE,
) -> str:
    receipt = stub.SubmitCorrection(
        residents_pb2.CorrectionRequest(
            name=name,
            document_type=ingest_pb2.RESIDENT_ID_CARD,
            document_number=number,
            phone=phone,
            round=reg.round,
            site_id=site,
            sampled_at_ms=reg.captured_at_ms,
        ),
        metadata=_metadata(settings),
        timeout=10,
    )
    return str(receipt.correction_id)


def _found(
    stub: residents_pb2_grpc.ResidentsStub, settings: Settings, number: str
) -> bool:
    reply = stub.Lookup(
        residents_pb2.LookupRequest(
            document_type=ingest_pb2.RESIDENT_ID_CARD, document_number=number
        ),
        metadata=_metadata(settings),
        timeout=10,
    )
    return bool(reply.found)


async def test_misread_id_is_found_merged_kept_in_history_and_audited(
    settings: Settings,
    world: World,
    stub: residents_pb2_grpc.ResidentsStub,
    queue: CorrectionQueue,
    finder: CandidateFinder,
    store: CqlStore,
    cipher: PiiCipher,
) -> None:
    """The misread registration is the top candidate; a merge gives it the ID."""
    reg = world.regs[0]
    true_id = world.true_ids[reg.registration_id]
    assert not _found(stub, settings, true_id)
    cid = _submit(stub, settings, reg, name=reg.name, number=true_id)

    correction = await queue.get(cid)
    report = await finder.find(correction, dt.date.today())
    result = await queue.merge(cid, OPERATOR, report.candidates[0].registration_id)

    top = report.candidates[0]
    assert (reg.registration_id, "id_edit", 2, True) == (
        top.registration_id,
        top.source,
        top.id_edits,
        top.name_matches,
    )
    assert ("document",) == result.changed
    assert _found(stub, settings, true_id)
    assert not _found(stub, settings, reg.document_number)
    rid = uuid.UUID(reg.registration_id)
    main = store.execute_sync(
        "SELECT * FROM {ks}.registrations WHERE registration_id = %s", (rid,)
    )[0]
    new_hash = cipher.lookup_hash(1, true_id)
    assert true_id == cipher.open(main.doc_sealed, rid.bytes)
    assert new_hash == main.doc_hash
    rounds = store.execute_sync(
        "SELECT doc_hash, registration_id FROM {ks}.registrations_by_round_district"
        " WHERE round = 1 AND district = '120101' AND bucket = %s",
        (new_hash[0] % 32,),
    )
    assert (new_hash, rid) in {(r.doc_hash, r.registration_id) for r in rounds}
    tube = store.execute_sync(
        "SELECT doc_hash FROM {ks}.registrations_by_tube"
        " WHERE tube = %s AND registration_id = %s",
        (reg.tube_barcode, rid),
    )[0]
    assert new_hash == tube.doc_hash
    history = await RegistrationEditor(store, cipher).history(rid)
    assert 1 == len(history)
    old_name, old_number = RegistrationEditor(store, cipher).open_history(
        rid, history[0]
    )
    assert (reg.name, reg.document_number) == (old_name, old_number)
    assert cipher.lookup_hash(1, reg.document_number) == history[0].doc_hash
    actions = [e.action for e in await queue.events(cid)]
    assert ["submitted", "merge_started", "merged"] == actions
    assert "op-li" in (await queue.events(cid))[-1].actor
    assert CorrectionState.MERGED == (await queue.get(cid)).state
    assert cid not in {c.id for c in await queue.queue(CorrectionState.OPEN)}
    assert cid in {c.id for c in await queue.queue(CorrectionState.MERGED)}
    with pytest.raises(CorrectionConflict):
        await queue.merge(cid, OPERATOR, world.regs[5].registration_id)


async def test_misread_name_merges_the_name_only(
    settings: Settings,
    world: World,
    stub: residents_pb2_grpc.ResidentsStub,
    queue: CorrectionQueue,
    finder: CandidateFinder,
    store: CqlStore,
    cipher: PiiCipher,
) -> None:
    """Same number, other name: a same_id candidate; the merge fixes the name."""
    reg = world.regs[1]
    true_name = world.true_names[reg.registration_id]
    cid = _submit(stub, settings, reg, name=true_name, number=reg.document_number)

    report = await finder.find(await queue.get(cid), dt.date.today())
    same = [c for c in report.candidates if c.source == "same_id"]
    result = await queue.merge(cid, OPERATOR, same[0].registration_id)

    assert [reg.registration_id] == [c.registration_id for c in same]
    assert same[0].name_matches is False
    assert ("name",) == result.changed
    rid = uuid.UUID(reg.registration_id)
    main = store.execute_sync(
        "SELECT name_sealed FROM {ks}.registrations WHERE registration_id = %s",
        (rid,),
    )[0]
    assert true_name == cipher.open(main.name_sealed, rid.bytes)
    editor = RegistrationEditor(store, cipher)
    history = await editor.history(rid)
    assert reg.name == editor.open_history(rid, history[0])[0]


async def test_ocr_flag_with_the_right_read_is_a_candidate(
    settings: Settings,
    world: World,
    stub: residents_pb2_grpc.ResidentsStub,
    queue: CorrectionQueue,
    finder: CandidateFinder,
    store: CqlStore,
    cipher: PiiCipher,
) -> None:
    """A registration whose photo read as the request's number is offered."""
    reg = world.regs[3]
    true_id = world.true_ids[reg.registration_id]
    rid = uuid.UUID(reg.registration_id)
    store.execute_sync(
        "INSERT INTO {ks}.ocr_verifications (registration_id, verdict, field,"
        " server_read_sealed, confidence, round, district, site, verified_at)"
        " VALUES (%s, 'MISMATCH', 'id_number', %s, 0.9, 1, '120101', %s,"
        " toTimestamp(now()))",
        (rid, cipher.seal(true_id, rid.bytes), SITE),
    )
    store.execute_sync(
        "INSERT INTO {ks}.ocr_flags (round, district, registration_id, verdict,"
        " field, confidence, site, verified_at) VALUES (1, '120101', %s,"
        " 'MISMATCH', 'id_number', 0.9, %s, toTimestamp(now()))",
        (rid, SITE),
    )
    cid = _submit(stub, settings, reg, name="路人甲", number=true_id)

    report = await finder.find(await queue.get(cid), dt.date.today())

    flagged = [c for c in report.candidates if c.source == "ocr_flag"]
    assert [reg.registration_id] == [c.registration_id for c in flagged]
    assert "server read" in flagged[0].detail


async def test_same_site_and_time_offers_the_far_misread(
    settings: Settings,
    world: World,
    stub: residents_pb2_grpc.ResidentsStub,
    queue: CorrectionQueue,
    finder: CandidateFinder,
) -> None:
    """A number far from the request's is still found by site, time and name."""
    reg = world.regs[2]
    true_id = world.true_ids[reg.registration_id]
    cid = _submit(stub, settings, reg, name=reg.name, number=true_id)

    report = await finder.find(await queue.get(cid), dt.date.today())

    nearby = {c.registration_id: c for c in report.candidates}
    assert reg.registration_id in nearby
    assert nearby[reg.registration_id].name_matches
    assert nearby[reg.registration_id].id_edits > 2
    assert report.candidates[0].registration_id == reg.registration_id
    assert len(report.candidates) > 1


async def test_reject_and_not_sampled_close_with_a_note(
    world: World, queue: CorrectionQueue
) -> None:
    """Both need a note, are audited, move queues and cannot be repeated."""
    person = PersonFactory(5151).person()
    request = CorrectionInput(
        name=person.name, doc_type=1, number=person.id_number, phone="022-23456789"
    )
    rejected, _ = await queue.submit(OPERATOR, request)
    unsampled, _ = await queue.submit(OPERATOR, request)

    with pytest.raises(RequestInvalid) as missing:
        await queue.reject(rejected, OPERATOR, "  ")
    await queue.reject(rejected, OPERATOR, "caller could not confirm the site")
    await queue.mark_not_sampled(unsampled, Actor("operator", "op-wang"), "no record")

    assert "note" == missing.value.field
    assert CorrectionState.REJECTED == (await queue.get(rejected)).state
    assert CorrectionState.NOT_SAMPLED == (await queue.get(unsampled)).state
    assert "operator:op-wang" == (await queue.get(unsampled)).resolved_by
    open_ids = {c.id for c in await queue.queue(CorrectionState.OPEN)}
    assert not {rejected, unsampled} & open_ids
    assert rejected in {c.id for c in await queue.queue(CorrectionState.REJECTED)}
    events = await queue.events(unsampled)
    assert ["submitted", "not_sampled"] == [e.action for e in events]
    assert "operator:op-li" == events[0].actor
    with pytest.raises(CorrectionConflict):
        await queue.reject(rejected, Actor("operator", "op-zhao"), "again")
    with pytest.raises(CorrectionConflict):
        await queue.merge(unsampled, OPERATOR, world.regs[6].registration_id)


async def test_merge_into_a_missing_registration_leaves_the_request_open(
    queue: CorrectionQueue,
) -> None:
    """No such registration: refused before the request changes state."""
    person = PersonFactory(5252).person()
    cid, _ = await queue.submit(
        OPERATOR,
        CorrectionInput(
            name=person.name, doc_type=1, number=person.id_number, phone=PHONE
        ),
    )

    with pytest.raises(MergeRefused):
        await queue.merge(cid, OPERATOR, str(uuid.uuid4()))

    assert CorrectionState.OPEN == (await queue.get(cid)).state


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"document_number": "120101199003070019"}, "check character"),
        ({"name": ""}, "name is empty"),
        ({"name": "Bob99"}, "name may hold"),
        ({"phone": ""}, "phone is empty"),
        ({"phone": "12345"}, "phone must be"),
        ({"site_id": "999999-001"}, "site_id"),
    ],
)
async def test_bad_submissions_are_refused_and_nothing_is_queued(
    settings: Settings,
    stub: residents_pb2_grpc.ResidentsStub,
    queue: CorrectionQueue,
    changes: dict[str, str],
    words: str,
) -> None:
    """INVALID_ARGUMENT naming the field; the open queue does not grow."""
    person = PersonFactory(6161).person()
    fields: dict[str, object] = {
        "name": person.name,
        "document_type": ingest_pb2.RESIDENT_ID_CARD,
        "document_number": person.id_number,
        "phone": PHONE,
        **changes,
    }
    before = len(await queue.queue(CorrectionState.OPEN))

    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitCorrection(
            residents_pb2.CorrectionRequest(**fields),  # type: ignore[arg-type]
            metadata=_metadata(settings),
            timeout=10,
        )

    assert grpc.StatusCode.INVALID_ARGUMENT == caught.value.code()
    assert words in (caught.value.details() or "")
    assert before == len(await queue.queue(CorrectionState.OPEN))


async def test_cli_lists_shows_and_resolves(
    settings: Settings, queue: CorrectionQueue
) -> None:
    """`sieve corrections` lists the request, shows it audited, rejects it."""
    from click.testing import CliRunner

    from engine.cli import main

    person = PersonFactory(7171).person()
    cid, _ = await queue.submit(
        OPERATOR,
        CorrectionInput(
            name=person.name, doc_type=1, number=person.id_number, phone=PHONE
        ),
    )
    env = {
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
    }
    runner = CliRunner()

    listed = await asyncio.to_thread(
        runner.invoke, main, ["corrections", "list"], env=env
    )
    shown = await asyncio.to_thread(
        runner.invoke,
        main,
        ["corrections", "show", cid, "--operator", "op-cli"],
        env=env,
    )
    both = await asyncio.to_thread(
        runner.invoke,
        main,
        ["corrections", "resolve", cid, "--reject", "--not-sampled"],
        env=env,
    )
    done = await asyncio.to_thread(
        runner.invoke,
        main,
        ["corrections", "resolve", cid, "--reject", "--note", "duplicate call"],
        env=env,
    )

    assert 0 == listed.exit_code, listed.output
    assert cid in listed.output
    assert 0 == shown.exit_code, shown.output
    assert "candidates" in shown.output and person.id_number not in shown.output
    assert 0 != both.exit_code
    assert "exactly one" in both.output
    assert 0 == done.exit_code, done.output
    assert CorrectionState.REJECTED == (await queue.get(cid)).state
    actions = [(e.actor, e.action) for e in await queue.events(cid)]
    assert ("operator:op-cli", "viewed") in actions
