"""Photos through the whole path: gateway, shard, store, OCR actors, verdicts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import ray
from ray.cluster_utils import Cluster

from engine.config import Settings
from engine.documents import DocumentType, check_id_character
from engine.pii import PiiCipher
from engine.registration import Outcome, Registration
from engine.shard import ShardWriter
from engine.store import CqlStore
from engine.tube_book import TubeBook
from perf.cards import CardFactory, GeneratedCard
from perf.device import send_all
from sieve.v1 import ingest_pb2
from tests.conftest import GatewayThread
from tests.helpers import allocate_tubes, device_token, make_registrations, stored_ids

pytestmark = pytest.mark.integration

SITE = "120106-002"
DEVICE = "120106-002-D0004"
VERDICT_GUARD_S = 240
"""Only guards against a hang; no assertion depends on time."""


@pytest.fixture(scope="module")
def ocr_gateway(settings: Settings, ray_local: Cluster) -> Iterator[GatewayThread]:
    """A gateway whose shard hosts verify photos with one real OCR actor."""
    with_ocr = dataclasses.replace(settings, ocr_actors=1, ocr_sweep_s=1.0)
    running = GatewayThread(with_ocr, num_hosts=2)
    yield running
    running.close()
    ray.kill(ray.get_actor("ocr-0", namespace=with_ocr.ray_namespace))


def _one_digit_off(number: str) -> str:
    digit = "1" if number[14] != "1" else "2"
    first17 = number[:14] + digit + number[15:17]
    return first17 + check_id_character(first17)


def _registration(
    card: GeneratedCard,
    store: CqlStore,
    *,
    id_number: str | None = None,
    image: bytes | None = None,
) -> ingest_pb2.Registration:
    tubes = allocate_tubes(store, SITE, 1, capacity=1)
    seed = uuid.uuid4().int % 10_000
    registration = make_registrations(1, SITE, tubes=tubes, per_tube=1, seed=seed)[0]
    registration.name = card.truth.name
    registration.document_number = id_number or card.truth.id_number
    registration.id_card_image = card.jpeg if image is None else image
    return registration


def _send(settings: Settings, address: str, registrations: list) -> dict:
    async def run() -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            report = await send_all(
                channel,
                DEVICE,
                device_token(settings, DEVICE),
                registrations,
                window=8,
            )
        return report.acks

    return asyncio.run(run())


def _verdicts(store: CqlStore, ids: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + VERDICT_GUARD_S
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and len(found) < len(ids):
        for key in ids:
            rows = store.execute_sync(
                "SELECT verdict, field, server_read_sealed FROM {ks}.ocr_verifications"
                " WHERE registration_id = %s",
                (uuid.UUID(key),),
            )
            if rows:
                found[key] = rows[0]
        time.sleep(0.5)
    return found


def test_honest_record_matches_and_altered_id_is_flagged(
    settings: Settings, ocr_gateway: GatewayThread, store: CqlStore, cipher: PiiCipher
) -> None:
    """Acks come first; then MATCH for the honest card, MISMATCH with the real ID."""
    cards = CardFactory(77, severity=0.6)
    honest_card, altered_card = cards.card(), cards.card()
    honest = _registration(honest_card, store)
    altered = _registration(
        altered_card, store, id_number=_one_digit_off(altered_card.truth.id_number)
    )

    acks = _send(settings, ocr_gateway.address, [honest, altered])

    for registration in (honest, altered):
        ack = acks[registration.registration_id]
        assert ingest_pb2.STORED == ack.status
        assert ingest_pb2.IMAGE_ACCEPTED == ack.image
    verdicts = _verdicts(store, [honest.registration_id, altered.registration_id])
    assert "MATCH" == verdicts[honest.registration_id].verdict
    flagged = verdicts[altered.registration_id]
    assert "MISMATCH" == flagged.verdict
    assert "id_number" == flagged.field
    server_read = cipher.open(
        flagged.server_read_sealed,
        uuid.UUID(altered.registration_id).bytes,
    )
    assert altered_card.truth.id_number == server_read
    flags = store.execute_sync(
        "SELECT registration_id FROM {ks}.ocr_flags WHERE round = 1 AND district = %s",
        ("120106",),
    )
    assert uuid.UUID(altered.registration_id) in {row.registration_id for row in flags}


def test_bad_photos_are_dropped_and_the_registration_still_stored(
    settings: Settings, ocr_gateway: GatewayThread, store: CqlStore
) -> None:
    """An oversize or non-JPEG photo is refused by name; the record is stored."""
    card = CardFactory(78, severity=0.3).card()
    too_big = b"\xff\xd8" + b"\0" * settings.max_image_bytes
    oversize = _registration(card, store, image=too_big)
    garbage = _registration(card, store, image=b"GIF89a not a card photo")

    acks = _send(settings, ocr_gateway.address, [oversize, garbage])

    assert ingest_pb2.IMAGE_TOO_LARGE == acks[oversize.registration_id].image
    assert ingest_pb2.IMAGE_UNDECODABLE == acks[garbage.registration_id].image
    for registration in (oversize, garbage):
        assert ingest_pb2.STORED == acks[registration.registration_id].status
        assert acks[registration.registration_id].image_message
    ids = [oversize.registration_id, garbage.registration_id]
    assert {1} == set(stored_ids(store, ids).values())
    for key in ids:
        assert not store.execute_sync(
            "SELECT registration_id FROM {ks}.id_card_images"
            " WHERE registration_id = %s",
            (uuid.UUID(key),),
        )


def test_pending_photos_of_a_killed_host_are_verified_after_restart(
    settings: Settings, ocr_gateway: GatewayThread, store: CqlStore, cipher: PiiCipher
) -> None:
    """Rows written but never sent to OCR (host died) are swept after restart."""
    cards = CardFactory(79, severity=0.5)
    shard_id = "120106/0"
    host = ocr_gateway.stack.hosts[ocr_gateway.stack.router.host_for(shard_id)]
    pid = ray.get(host.pid.remote())
    # What a host leaves behind when it dies between the write and the hand-off
    # to OCR: main, index, photo and pending rows, and no verdict.
    writer = ShardWriter(store, cipher, [shard_id], TubeBook(store))
    (tube,) = allocate_tubes(store, SITE, 4)
    records = [_record(card, tube) for card in cards.cards(4)]
    items = [(shard_id, record) for record in records]
    assert [Outcome.STORED] * 4 == asyncio.run(writer.write_batch(items))
    ids = [str(uuid.UUID(bytes=r.registration_id)) for r in records]
    os.kill(pid, signal.SIGKILL)

    verdicts = _verdicts(store, ids)

    assert set(ids) == set(verdicts)
    assert {"MATCH"} == {v.verdict for v in verdicts.values()}
    assert pid != ray.get(host.pid.remote())
    pending = store.execute_sync(
        "SELECT registration_id FROM {ks}.ocr_pending WHERE shard = %s", (shard_id,)
    )
    assert not {row.registration_id for row in pending} & {uuid.UUID(k) for k in ids}


def _record(card: GeneratedCard, tube: str) -> Registration:
    now_ms = time.time_ns() // 1_000_000
    return Registration(
        registration_id=uuid.uuid4().bytes,
        round=1,
        tube=tube,
        name=card.truth.name,
        doc_type=int(DocumentType.RESIDENT_ID_CARD),
        doc_number=card.truth.id_number,
        site=SITE,
        district="120106",
        device=DEVICE,
        collector="C000001",
        captured_at_ms=now_ms,
        received_at_ms=now_ms,
        attempt=uuid.uuid4().bytes,
        image=card.jpeg,
    )
