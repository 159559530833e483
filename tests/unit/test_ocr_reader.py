"""Tests for CardReader on the real PP-OCR models and generated card photos."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.documents import check_id_character
from engine.ocr_reader import (
    ID_SYMBOLS,
    MANIFEST,
    CardReader,
    OcrModelError,
    decode_id_number,
    load_model_paths,
)
from perf.cards import CardFactory, GeneratedCard

TODAY = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def reader() -> CardReader:
    """One real reader (det and rec models on CPU) for the module."""
    return CardReader(threads=2, providers=["CPUExecutionProvider"])


def _reencode(card: GeneratedCard, change: Callable[[np.ndarray], np.ndarray]) -> bytes:
    image = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    return bytes(cv2.imencode(".png", change(image))[1])


def test_reads_a_clean_card_exactly(reader: CardReader) -> None:
    """An undamaged card reads back its name and number with high confidence."""
    card = CardFactory(3, severity=0.0).card()
    (read,) = reader.read_batch([card.jpeg], today=TODAY)
    assert read.name == card.truth.name
    assert read.id_number == card.truth.id_number
    assert read.id_valid
    assert read.confidence >= 0.9
    assert read.locator == "edges"


def test_reads_a_batch_of_damaged_cards(reader: CardReader) -> None:
    """Cards at full damage severity read back, in order, nearly all exactly."""
    cards = CardFactory(2026, severity=1.0).cards(16)
    reads = reader.read_batch([c.jpeg for c in cards], today=TODAY)
    assert len(reads) == len(cards)
    pairs = list(zip(reads, cards, strict=True))
    id_right = sum(r.id_number == c.truth.id_number for r, c in pairs)
    name_right = sum(r.name == c.truth.name for r, c in pairs)
    assert id_right >= 15
    assert name_right >= 15
    assert all(r.id_valid for r in reads)


def test_check_character_repairs_a_half_hidden_digit(reader: CardReader) -> None:
    """A digit with its lower 60 % hidden is still read right via the check rules."""
    cards = CardFactory(3, severity=0.0).cards(6)
    for index in (3, 4, 5):
        card = cards[index]
        left, top = card.truth.corners[0]
        digit = 5 + index

        def hide(
            image: np.ndarray, left: float = left, top: float = top, digit: int = digit
        ) -> np.ndarray:
            x = int(left + 278 + digit * 26.8)
            image[int(top + 467) : int(top + 490), x - 2 : x + 24] = (236, 238, 240)
            return image

        (read,) = reader.read_batch([_reencode(card, hide)], today=TODAY)
        assert read.id_number == card.truth.id_number
        assert read.id_valid


def test_card_without_visible_outline_is_placed_by_its_number(
    reader: CardReader,
) -> None:
    """A photo cropped inside the card's edges is located by the det model."""
    card = CardFactory(21, severity=0.6).card()
    xs = sorted(x for x, _ in card.truth.corners)
    ys = sorted(y for _, y in card.truth.corners)
    inset_x, inset_y = 0.03 * (xs[2] - xs[1]), 0.03 * (ys[2] - ys[1])

    def crop(image: np.ndarray) -> np.ndarray:
        return image[
            int(ys[1] + inset_y) : int(ys[2] - inset_y),
            int(xs[1] + inset_x) : int(xs[2] - inset_x),
        ]

    (read,) = reader.read_batch([_reencode(card, crop)], today=TODAY)
    assert read.locator == "text"
    assert read.id_number == card.truth.id_number
    assert read.name == card.truth.name


def test_undecodable_bytes_read_as_nothing(reader: CardReader) -> None:
    """Bytes that are no image give an empty, zero-confidence read, not an error."""
    good = CardFactory(1, severity=0.0).card()
    reads = reader.read_batch([b"not an image", good.jpeg], today=TODAY)
    assert reads[0].confidence == 0.0
    assert not reads[0].id_valid
    assert reads[0].locator == "none"
    assert reads[1].id_number == good.truth.id_number


def test_decoder_prefers_the_hypothesis_that_passes_the_check() -> None:
    """When the likelier digit breaks the check character, the valid one wins."""
    number = "120104198001011234"
    number = number[:17] + check_id_character(number[:17])
    wrong = "7" if number[9] != "7" else "1"
    frames = []
    for position, char in enumerate(number):
        row = np.full(len(ID_SYMBOLS) + 1, 1e-6)
        if position == 9:
            row[1 + ID_SYMBOLS.index(wrong)] = 0.55
            row[1 + ID_SYMBOLS.index(char)] = 0.45
        else:
            row[1 + ID_SYMBOLS.index(char)] = 1.0
        frames += [row, np.eye(1, len(ID_SYMBOLS) + 1)[0]]  # character, blank
    probs = np.array(frames) / np.array(frames).sum(axis=1, keepdims=True)
    read, confidence, candidates = decode_id_number(probs, TODAY)
    assert read == number
    assert 0.3 < confidence < 0.6
    assert candidates[0][0] == number


def test_decoder_reports_no_valid_read_when_none_passes() -> None:
    """A 17-digit hypothesis gives confidence 0 and no candidates."""
    frames = []
    for char in "12010419800101123":
        row = np.full(len(ID_SYMBOLS) + 1, 1e-9)
        row[1 + ID_SYMBOLS.index(char)] = 1.0
        frames += [row, np.eye(1, len(ID_SYMBOLS) + 1)[0]]
    read, confidence, candidates = decode_id_number(np.array(frames), TODAY)
    assert read == "12010419800101123"
    assert confidence == 0.0
    assert candidates == ()


def test_manifest_hashes_are_checked(tmp_path: Path) -> None:
    """A manifest whose hash differs from the installed file stops the load."""
    assert set(load_model_paths()) == {"det", "rec"}
    text = MANIFEST.read_text(encoding="utf-8")
    wrong = tmp_path / "manifest.toml"
    wrong.write_text(text.replace('sha256 = "6f32', 'sha256 = "0000'), encoding="utf-8")
    with pytest.raises(OcrModelError, match="hash"):
        load_model_paths(wrong)


def test_read_repr_masks_personal_data(reader: CardReader) -> None:
    """An OcrRead's repr shows neither the full name nor the full number."""
    card = CardFactory(4, severity=0.0).card()
    (read,) = reader.read_batch([card.jpeg], today=TODAY)
    shown = repr(read)
    assert card.truth.id_number not in shown
    assert card.truth.name not in shown
