"""Registrations as the engine carries them after validation, and their outcomes.

A :class:`Registration` is what a district shard writes: validated, normalised,
with the district resolved from its site and the gateway's receive time and
attempt id attached. It still holds plaintext name and document number; they
are sealed by the shard just before the write and never logged.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "Outcome",
    "Registration",
    "RejectReason",
    "ShardAnswer",
    "WriteResult",
    "decode_answer",
    "encode_answer",
]


class RejectReason(enum.IntEnum):
    """Why a registration was refused; values match ``sieve.v1.RejectReason``."""

    INVALID_REGISTRATION_ID = 1
    INVALID_ROUND = 2
    INVALID_TUBE_BARCODE = 3
    INVALID_NAME = 4
    INVALID_DOCUMENT_TYPE = 5
    INVALID_DOCUMENT_NUMBER = 6
    UNKNOWN_SITE = 7
    SITE_NOT_ALLOWED = 8
    INVALID_COLLECTOR = 9
    INVALID_CAPTURED_AT = 10
    TUBE_UNKNOWN = 11
    TUBE_FULL = 12
    TUBE_SEALED = 13
    TUBE_IN_USE = 14
    TUBE_OTHER_DISTRICT = 15
    TUBE_OTHER_ROUND = 16
    STORE_UNAVAILABLE = 20
    SHARD_UNAVAILABLE = 21


class Outcome(enum.IntEnum):
    """What became of one registration; values match ``sieve.v1.AckStatus``."""

    STORED = 1
    DUPLICATE = 2
    REJECTED = 3
    RETRY = 4


class Registration(NamedTuple):
    """A validated registration on its way to the store.

    A NamedTuple rather than a dataclass: thousands cross a Ray call each
    second and a tuple pickles in a fraction of the time.
    """

    registration_id: bytes
    """16 raw bytes of the device-made UUID."""
    round: int
    tube: str
    name: str
    doc_type: int
    doc_number: str
    site: str
    district: str
    device: str
    collector: str
    captured_at_ms: int
    received_at_ms: int
    attempt: bytes
    """16 raw bytes naming the gateway's receipt of this request; a shard retry
    of the same receipt is reported STORED, a device resend DUPLICATE."""
    image: bytes = b""
    """The accepted ID-card photo (JPEG), or empty."""


class WriteResult(NamedTuple):
    """A shard's answer for one registration of a batch."""

    outcome: Outcome
    shard: str


ShardAnswer = Outcome | RejectReason
"""What a shard says of one registration: an outcome, or why it refused it."""

_REJECT_BASE = 100


def encode_answer(answer: ShardAnswer) -> int:
    """A shard answer as one small int, cheap to send back across Ray."""
    if isinstance(answer, RejectReason):
        return _REJECT_BASE + int(answer)
    return int(answer)


def decode_answer(value: int) -> ShardAnswer:
    """The inverse of :func:`encode_answer`."""
    if value >= _REJECT_BASE:
        return RejectReason(value - _REJECT_BASE)
    return Outcome(value)
