"""The gateway's ID-card photo policy."""

from __future__ import annotations

import io

from PIL import Image

from engine.card_images import ImageOutcome, check_card_image


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "JPEG")
    return buffer.getvalue()


def test_no_photo_is_not_an_error() -> None:
    """An empty photo field means no photo."""
    assert ImageOutcome.NONE == check_card_image(b"", 1000).outcome


def test_card_sized_jpeg_is_accepted() -> None:
    """A JPEG of a card's size under the limit is kept."""
    assert ImageOutcome.ACCEPTED == check_card_image(_jpeg(856, 540), 10**6).outcome


def test_oversize_photo_is_dropped_with_its_size() -> None:
    """A photo over the limit is TOO_LARGE and the message gives the sizes."""
    check = check_card_image(_jpeg(856, 540), 100)
    assert ImageOutcome.TOO_LARGE == check.outcome
    assert "100" in check.message


def test_non_jpeg_and_broken_and_tiny_photos_are_undecodable() -> None:
    """PNG bytes, a cut JPEG header and a 10-pixel JPEG are all refused."""
    png = io.BytesIO()
    Image.new("RGB", (100, 100)).save(png, "PNG")
    for blob in (png.getvalue(), b"\xff\xd8\xff\xe0garbage", _jpeg(10, 10)):
        assert ImageOutcome.UNDECODABLE == check_card_image(blob, 10**6).outcome
