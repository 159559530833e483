"""Tests for the verdict that compares a server read with the phone's values."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.documents import check_id_character
from engine.ocr_reader import CardReader, OcrRead
from engine.ocr_verdict import (
    CLAIM_CONSISTENT_SHARE,
    MISMATCH_MIN_CONFIDENCE,
    OcrResult,
    Verdict,
    judge,
)
from perf.cards import CardFactory

TODAY = dt.date(2026, 6, 1)
NUMBER = "12010419800101123" + check_id_character("12010419800101123")


def _read(
    name: str = "张伟",
    number: str = NUMBER,
    *,
    name_conf: float = 0.99,
    id_conf: float = 0.99,
    valid: bool = True,
    name_candidates: tuple[tuple[str, float], ...] | None = None,
    id_candidates: tuple[tuple[str, float], ...] | None = None,
) -> OcrRead:
    return OcrRead(
        name=name,
        id_number=number,
        confidence=min(name_conf, id_conf),
        name_confidence=name_conf,
        id_confidence=id_conf,
        id_valid=valid,
        name_candidates=name_candidates or ((name, name_conf),),
        id_candidates=id_candidates
        if id_candidates is not None
        else (((number, id_conf),) if valid else ()),
        locator="edges",
    )


def _one_digit_off(number: str) -> str:
    digit = "5" if number[10] != "5" else "6"
    return number[:10] + digit + number[11:]


def test_identical_values_match() -> None:
    """A read equal to both claimed values is MATCH."""
    result = judge(_read(), "张伟", NUMBER)
    assert result.verdict is Verdict.MATCH
    assert result.confidence == pytest.approx(0.99)


def test_claimed_number_is_normalised_before_comparing() -> None:
    """Spaces and a lower-case x in the claimed number do not cause a mismatch."""
    number = "11010519491231002" + check_id_character("11010519491231002")
    claimed = f" {number.lower()} "
    assert judge(_read(number=number), "张伟", claimed).verdict is Verdict.MATCH


def test_confident_different_number_is_a_mismatch() -> None:
    """A sure read that differs from the claimed number is MISMATCH with the read."""
    result = judge(_read(), "张伟", _one_digit_off(NUMBER))
    assert result.verdict is Verdict.MISMATCH
    assert result.field == "id_number"
    assert result.server_read == NUMBER
    assert result.confidence >= MISMATCH_MIN_CONFIDENCE


def test_unsure_different_number_is_unreadable_not_mismatch() -> None:
    """A differing read below the mismatch confidence sends the record to a person."""
    result = judge(_read(id_conf=0.5), "张伟", _one_digit_off(NUMBER))
    assert result.verdict is Verdict.UNREADABLE
    assert result.field == "id_number"
    assert result.reason == "low_confidence"


def test_claim_held_by_a_runner_up_read_matches() -> None:
    """A claimed name that holds a large share of the beam is consistent: MATCH."""
    read = _read(
        name="真春刚",
        name_conf=0.39,
        name_candidates=(("真春刚", 0.39), ("袁春刚", 0.34)),
    )
    result = judge(read, "袁春刚", NUMBER)
    assert result.verdict is Verdict.MATCH
    assert result.confidence >= CLAIM_CONSISTENT_SHARE


def test_claim_held_by_a_small_share_is_ambiguous() -> None:
    """A claimed name with a few percent of the beam cannot be ruled out."""
    read = _read(
        name="段立",
        name_conf=0.95,
        name_candidates=(("段立", 0.95), ("段立鹏", 0.04)),
    )
    result = judge(read, "段立鹏", NUMBER)
    assert result.verdict is Verdict.UNREADABLE
    assert result.field == "name"
    assert result.reason == "ambiguous"


def test_number_mismatch_is_reported_before_name_mismatch() -> None:
    """When both fields differ the verdict names the ID number."""
    result = judge(_read(), "李娜", _one_digit_off(NUMBER))
    assert result.verdict is Verdict.MISMATCH
    assert result.field == "id_number"


def test_invalid_read_is_unreadable() -> None:
    """A read whose number fails the check rules is UNREADABLE, never MISMATCH."""
    read = _read(number=NUMBER[:17], id_conf=0.0, valid=False)
    result = judge(read, "张伟", NUMBER)
    assert result.verdict is Verdict.UNREADABLE
    assert result.reason == "invalid_read"


def test_name_dots_are_normalised() -> None:
    """Minority names match whichever middle dot the phone's keyboard typed."""
    read = _read(name="阿依古丽·买买提")
    assert judge(read, "阿依古丽•买买提", NUMBER).verdict is Verdict.MATCH


def test_result_repr_masks_the_server_read() -> None:
    """A verdict's repr never shows the full number."""
    result = judge(_read(), "张伟", _one_digit_off(NUMBER))
    assert NUMBER not in repr(result)
    assert isinstance(result, OcrResult)


@pytest.fixture(scope="module")
def reader() -> CardReader:
    """One real reader for the module."""
    return CardReader(threads=2, providers=["CPUExecutionProvider"])


def test_real_photo_honest_record_matches(reader: CardReader) -> None:
    """An honest record judged against its own damaged photo is MATCH."""
    cards = CardFactory(77, severity=0.8).cards(4)
    reads = reader.read_batch([c.jpeg for c in cards], today=TODAY)
    for card, read in zip(cards, reads, strict=True):
        assert judge(read, card.truth.name, card.truth.id_number).verdict is (
            Verdict.MATCH
        )


def test_real_photo_altered_record_is_flagged(reader: CardReader) -> None:
    """A record whose number was changed by one digit is MISMATCH with the truth."""
    card = CardFactory(78, severity=0.5).card()
    (read,) = reader.read_batch([card.jpeg], today=TODAY)
    result = judge(read, card.truth.name, _one_digit_off(card.truth.id_number))
    assert result.verdict is Verdict.MISMATCH
    assert result.server_read == card.truth.id_number


def test_real_photo_altered_name_is_flagged(reader: CardReader) -> None:
    """A record whose name was swapped for another is MISMATCH on the name."""
    card = CardFactory(79, severity=0.5).card()
    (read,) = reader.read_batch([card.jpeg], today=TODAY)
    other = "欧阳" + card.truth.name[1:]
    result = judge(read, other, card.truth.id_number)
    assert result.verdict is Verdict.MISMATCH
    assert result.field == "name"
    assert result.server_read == card.truth.name
