"""Integration tests for the OCR actors on a real local Ray and the real models."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.ocr_batcher import OcrActorPool, start_ocr_actors
from engine.ocr_verdict import Verdict, VerifyRequest
from perf.cards import CardFactory, GeneratedCard

pytestmark = pytest.mark.integration

RESULT_GUARD_S = 300
"""Only guards against a hang; no assertion depends on time."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray for this module (or the session's, when one is running)."""
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="WARNING",
            namespace=f"sieve-ocr-test-{uuid.uuid4().hex[:6]}",
        )
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def actors(ray_cluster: None) -> Iterator[list[Any]]:
    """Two OCR actors with small batches, killed for good after the module."""
    handles = start_ocr_actors(
        2, num_cpus=0.5, threads=1, max_batch_size=4, max_queue_delay_ms=20
    )
    yield handles
    for handle in handles:
        ray.kill(handle, no_restart=True)


@pytest.fixture
def pool(actors: list[Any]) -> OcrActorPool:
    """A fresh pool over the module's actors."""
    return OcrActorPool(actors, call_timeout_s=RESULT_GUARD_S)


def _request(card: GeneratedCard, number: str | None = None) -> VerifyRequest:
    return VerifyRequest(
        request_id=uuid.uuid4().hex,
        image=card.jpeg,
        name=card.truth.name,
        id_number=number or card.truth.id_number,
    )


def _one_digit_off(number: str) -> str:
    digit = "3" if number[12] != "3" else "4"
    return number[:12] + digit + number[13:]


async def test_altered_number_is_flagged_with_the_server_read(
    pool: OcrActorPool,
) -> None:
    """A record whose ID was changed by one digit on the phone is MISMATCH."""
    card = CardFactory(501, severity=0.6).card()
    altered = _one_digit_off(card.truth.id_number)
    result = await asyncio.wait_for(
        pool.verify(_request(card, altered)), RESULT_GUARD_S
    )
    assert result.verdict is Verdict.MISMATCH
    assert result.field == "id_number"
    assert result.server_read == card.truth.id_number


async def test_honest_record_matches(pool: OcrActorPool) -> None:
    """A record sent as printed on its card is MATCH."""
    card = CardFactory(502, severity=0.6).card()
    result = await asyncio.wait_for(pool.verify(_request(card)), RESULT_GUARD_S)
    assert result.verdict is Verdict.MATCH


async def test_read_returns_the_card_fields(pool: OcrActorPool) -> None:
    """The pool's read gives the card's name and number."""
    card = CardFactory(503, severity=0.3).card()
    read = await asyncio.wait_for(pool.read(card.jpeg), RESULT_GUARD_S)
    assert (read.name, read.id_number) == (card.truth.name, card.truth.id_number)


async def test_actor_killed_mid_batch_loses_no_request(
    pool: OcrActorPool,
    actors: list[Any],
) -> None:
    """Killing an actor while it runs a batch still answers every request."""
    cards = CardFactory(504, severity=0.6).cards(16)
    tasks = [asyncio.ensure_future(pool.verify(_request(card))) for card in cards]
    victim_pid = None
    for _ in range(2_000):  # poll for the condition; no time is asserted
        for handle in actors:
            stats = await handle.stats.remote()
            if stats["inflight_batches"] > 0:
                victim_pid = stats["pid"]
                break
        if victim_pid is not None:
            break
        await asyncio.sleep(0.01)
    assert victim_pid is not None, "no batch was ever seen running"
    os.kill(victim_pid, signal.SIGKILL)
    results = await asyncio.wait_for(asyncio.gather(*tasks), RESULT_GUARD_S)
    assert len(results) == len(cards)
    assert all(result.verdict is Verdict.MATCH for result in results)
    assert pool.num_retries >= 1


async def test_stats_count_batches(actors: list[Any], pool: OcrActorPool) -> None:
    """Each actor reports its batcher's counters and figures."""
    card = CardFactory(505, severity=0.2).card()
    await asyncio.wait_for(pool.read(card.jpeg), RESULT_GUARD_S)
    stats = [await handle.stats.remote() for handle in actors]
    assert sum(s["requests"] for s in stats) >= 1
    assert all(s["provider"] == "CPUExecutionProvider" for s in stats)
