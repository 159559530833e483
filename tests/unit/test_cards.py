"""Tests for the synthetic ID card photo generator."""

from __future__ import annotations

import datetime as dt
import io
import math

import pytest
from PIL import Image

from engine.documents import validate_resident_id
from perf.cards import CARD_SIZE, CardFactory, id_font_name


def test_same_seed_gives_same_photos_and_truth() -> None:
    """Two factories with one seed make byte-identical photos and equal truth."""
    first = CardFactory(42, severity=0.8).cards(3)
    second = CardFactory(42, severity=0.8).cards(3)
    assert [c.jpeg for c in first] == [c.jpeg for c in second]
    assert [c.truth for c in first] == [c.truth for c in second]


def test_different_seeds_give_different_people() -> None:
    """Different seeds draw different residents."""
    one = CardFactory(1).card().truth
    two = CardFactory(2).card().truth
    assert (one.name, one.id_number) != (two.name, two.id_number)


def test_truth_agrees_with_the_id_number() -> None:
    """Each card's number is valid and its birth date and sex are read from it."""
    for card in CardFactory(7).cards(20):
        truth = card.truth
        assert validate_resident_id(truth.id_number, dt.date.today()) == truth.id_number
        assert f"{truth.birth:%Y%m%d}" == truth.id_number[6:14]
        assert truth.sex == ("男" if int(truth.id_number[16]) % 2 else "女")
        assert 2 <= len(truth.name) <= 3
        assert truth.address


def test_photo_is_a_jpeg_holding_the_card_at_its_scale() -> None:
    """The photo decodes as JPEG and the card's corners span ID-1 proportions."""
    card = CardFactory(5, severity=1.0).card()
    image = Image.open(io.BytesIO(card.jpeg))
    assert image.format == "JPEG"
    (x0, y0), (x1, y1), (x2, y2), _ = card.truth.corners
    width = math.hypot(x1 - x0, y1 - y0)
    height = math.hypot(x2 - x1, y2 - y1)
    assert width / height == pytest.approx(CARD_SIZE[0] / CARD_SIZE[1], rel=0.01)
    assert width == pytest.approx(CARD_SIZE[0] * card.truth.damage.scale, rel=0.01)
    for x, y in card.truth.corners:
        assert 0 <= x <= image.width and 0 <= y <= image.height


def test_severity_zero_is_an_undamaged_full_scale_photo() -> None:
    """At severity 0 there is no rotation, blur, noise or shrinking."""
    damage = CardFactory(3, severity=0.0).card().truth.damage
    assert damage.angle_deg == 0.0
    assert damage.scale == 1.0
    assert damage.blur_sigma_px == 0.0
    assert damage.noise_sigma == 0.0
    assert damage.jpeg_quality == 95


def test_severity_bounds_every_kind_of_damage() -> None:
    """At full severity damage stays within the documented maxima."""
    for card in CardFactory(11, severity=1.0).cards(30):
        damage = card.truth.damage
        assert abs(damage.angle_deg) <= 4.0
        assert 0.5 <= damage.scale <= 1.0
        assert 0.0 <= damage.light_drop <= 0.45
        assert 0.0 <= damage.blur_sigma_px <= 1.2
        assert 40 <= damage.jpeg_quality <= 95


def test_severity_outside_zero_to_one_is_refused() -> None:
    """A severity above 1 raises ValueError."""
    with pytest.raises(ValueError, match="severity"):
        CardFactory(0, severity=1.5)


def test_number_is_printed_in_ocr_b_when_installed() -> None:
    """The number's font is OCR B from fonts-ocr-b, or the monospace stand-in."""
    assert id_font_name() in {"OCR B", "DejaVu Sans Mono"}
