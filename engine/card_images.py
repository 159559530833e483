"""The gateway's policy for ID-card photos sent with registrations.

A photo is optional. One that is larger than the limit, or is not a JPEG whose
header opens, is dropped: the registration is still judged on its own fields
and stored if valid, and the ack says what became of the photo. Only the
header is read here; full decoding is the OCR actors' work, off the ack path.
"""

from __future__ import annotations

import enum
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

__all__ = ["ImageCheck", "ImageOutcome", "check_card_image"]

MIN_SIDE_PX = 64
MAX_SIDE_PX = 8000
"""Bounds on a photo's sides: smaller cannot be read, larger is not a phone."""


class ImageOutcome(enum.IntEnum):
    """Values match ``sieve.v1.ImageOutcome``."""

    NONE = 0
    ACCEPTED = 1
    TOO_LARGE = 2
    UNDECODABLE = 3


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """The outcome for one photo and, when dropped, why."""

    outcome: ImageOutcome
    message: str = ""


def check_card_image(blob: bytes, max_bytes: int) -> ImageCheck:
    """Decide whether a photo is kept for OCR verification.

    Args:
        blob: the photo as sent; empty means none.
        max_bytes: largest accepted size.

    Returns:
        ACCEPTED, or the reason it was dropped (NONE for no photo).
    """
    if not blob:
        return ImageCheck(ImageOutcome.NONE)
    if len(blob) > max_bytes:
        return ImageCheck(
            ImageOutcome.TOO_LARGE,
            f"photo has {len(blob)} bytes, at most {max_bytes} accepted",
        )
    if not blob.startswith(b"\xff\xd8"):
        return ImageCheck(ImageOutcome.UNDECODABLE, "photo is not a JPEG")
    try:
        with Image.open(io.BytesIO(blob)) as image:
            width, height = image.size
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError):
        return ImageCheck(ImageOutcome.UNDECODABLE, "photo header does not open")
    if kind != "JPEG":
        return ImageCheck(ImageOutcome.UNDECODABLE, "photo is not a JPEG")
    if not (MIN_SIDE_PX <= min(width, height) and max(width, height) <= MAX_SIDE_PX):
        return ImageCheck(
            ImageOutcome.UNDECODABLE,
            f"photo is {width}x{height} px; sides must be {MIN_SIDE_PX}..{MAX_SIDE_PX}",
        )
    return ImageCheck(ImageOutcome.ACCEPTED)
