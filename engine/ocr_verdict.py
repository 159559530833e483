"""The verdict on a record: does the ID card photo agree with what the phone sent?"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.pii import mask_document, mask_name

if TYPE_CHECKING:
    # Only the type: importing the reader loads onnxruntime and OpenCV, which
    # the shard hosts that record verdicts do not need.
    from engine.ocr_reader import OcrRead

__all__ = [
    "CLAIM_AMBIGUOUS_SHARE",
    "CLAIM_CONSISTENT_SHARE",
    "MISMATCH_MIN_CONFIDENCE",
    "OcrResult",
    "Verdict",
    "VerifyRequest",
    "judge",
]

# TODO: these thresholds are set from generated cards only; re-measure them
# on a few hundred real, consented card photos before trusting MISMATCH rates.
CLAIM_CONSISTENT_SHARE = 0.2
"""The photo agrees with a claimed value that holds at least this share of the
reader's beam, even when it is not the top read: on the generated set most
wrong top reads of a name had the true name as runner-up with 0.2-0.4."""

CLAIM_AMBIGUOUS_SHARE = 0.01
"""A claimed value holding between this and CLAIM_CONSISTENT_SHARE cannot be
ruled out: the record is UNREADABLE (a person looks), never MISMATCH."""

MISMATCH_MIN_CONFIDENCE = 0.9
"""A MISMATCH names an honest resident a suspect, so the server's own read must
hold at least this share; numbers repaired by the check character score
0.001-0.7 and wrong name reads 0.3-0.7 on the generated set, while clear reads
score close to 1 (see ocr_models/README.md), so unsure reads go to UNREADABLE."""

_NAME_DOTS = str.maketrans({"•": "·", "・": "·", "．": "·", ".": "·", " ": None})


class Verdict(enum.Enum):
    """Outcome of comparing a photo with a record."""

    MATCH = "match"
    MISMATCH = "mismatch"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """A record to check: the photo and what the collector's phone sent.

    Attributes:
        request_id: the caller's id for the record (retries reuse it).
        image: the card photo, JPEG or PNG.
        name: name as registered.
        id_number: resident ID number as registered.
    """

    request_id: str
    image: bytes = dataclasses.field(repr=False)
    name: str = dataclasses.field(repr=False)
    id_number: str = dataclasses.field(repr=False)


@dataclass(frozen=True, slots=True)
class OcrResult:
    """A verdict and, for MISMATCH or UNREADABLE, what it is about.

    Attributes:
        verdict: MATCH, MISMATCH or UNREADABLE.
        field: ``id_number`` or ``name`` for MISMATCH and UNREADABLE.
        server_read: what the server read in that field (MISMATCH only).
        confidence: for MATCH the lower share the claimed values hold, for
            MISMATCH the server read's confidence, for UNREADABLE the field's.
        reason: short machine reason for UNREADABLE (``low_confidence``,
            ``invalid_read``, ``ambiguous``).
    """

    verdict: Verdict
    field: str | None = None
    server_read: str | None = None
    confidence: float = 0.0
    reason: str = ""

    def __repr__(self) -> str:
        shown = self.server_read or ""
        shown = mask_document(shown) if self.field == "id_number" else mask_name(shown)
        return (
            f"OcrResult({self.verdict.name}, field={self.field!r}, "
            f"server_read={shown!r}, confidence={self.confidence:.3f}, "
            f"reason={self.reason!r})"
        )


def judge(read: OcrRead, claimed_name: str, claimed_id: str) -> OcrResult:
    """Compare a server read with the values the phone sent.

    Each field is MATCH when the claimed value is the read or holds at least
    CLAIM_CONSISTENT_SHARE of the reader's beam; MISMATCH when it holds under
    CLAIM_AMBIGUOUS_SHARE and the read is at least MISMATCH_MIN_CONFIDENCE
    sure; UNREADABLE otherwise. The record's verdict is the ID number's
    MISMATCH, else the name's, else the first UNREADABLE, else MATCH.

    Args:
        read: the server's read of the photo.
        claimed_name: name as registered.
        claimed_id: ID number as registered (case and spaces are normalised).

    Returns:
        The verdict.
    """
    id_result = _judge_field(
        "id_number",
        read.id_number if read.id_valid else None,
        read.id_confidence,
        read.id_candidates,
        claimed_id.strip().upper(),
    )
    name_result = _judge_field(
        "name",
        read.name.translate(_NAME_DOTS) or None,
        read.name_confidence,
        tuple(
            (text.translate(_NAME_DOTS), share) for text, share in read.name_candidates
        ),
        claimed_name.translate(_NAME_DOTS),
    )
    for result in (id_result, name_result):
        if result.verdict is Verdict.MISMATCH:
            return result
    for result in (id_result, name_result):
        if result.verdict is Verdict.UNREADABLE:
            return result
    return OcrResult(
        Verdict.MATCH, confidence=min(id_result.confidence, name_result.confidence)
    )


def _judge_field(
    name: str,
    server: str | None,
    confidence: float,
    candidates: tuple[tuple[str, float], ...],
    claimed: str,
) -> OcrResult:
    support = sum(share for text, share in candidates if text == claimed)
    if server is not None and server == claimed:
        return OcrResult(Verdict.MATCH, confidence=max(support, confidence))
    if support >= CLAIM_CONSISTENT_SHARE:
        return OcrResult(Verdict.MATCH, confidence=support)
    if server is None:
        return OcrResult(
            Verdict.UNREADABLE, name, confidence=0.0, reason="invalid_read"
        )
    if support >= CLAIM_AMBIGUOUS_SHARE:
        return OcrResult(
            Verdict.UNREADABLE, name, confidence=confidence, reason="ambiguous"
        )
    if confidence < MISMATCH_MIN_CONFIDENCE:
        return OcrResult(
            Verdict.UNREADABLE, name, confidence=confidence, reason="low_confidence"
        )
    return OcrResult(Verdict.MISMATCH, name, server_read=server, confidence=confidence)
