"""Journey steps as the engine carries them, and the answers shards give.

A step is one fact reported by a device after registration: a tube sealed, a
box opened, tubes loaded, a box dispatched or received, a result. Steps are
validated by the gateway (:mod:`engine.journey_gateway`), routed to the shard
that owns their tube or box, and applied there (:mod:`engine.journey_shard`).
Plain NamedTuples, so they cross a Ray call cheaply.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "RESULTS",
    "DispatchBox",
    "LoadTubes",
    "OpenBox",
    "ReceiveBox",
    "RecordResult",
    "SealTube",
    "Step",
    "StepAnswer",
    "StepReason",
    "StepStatus",
]

RESULTS = ("NEGATIVE", "POSITIVE", "INVALID")
"""Results a lab may upload for a tube."""


class StepStatus(enum.IntEnum):
    """Values match ``sieve.v1.StepStatus``."""

    DONE = 1
    ALREADY_DONE = 2
    REFUSED = 3
    TRY_AGAIN = 4


class StepReason(enum.IntEnum):
    """Why a step was refused; values match ``sieve.v1.StepReason``."""

    INVALID_EVENT_ID = 1
    INVALID_TUBE_BARCODE = 2
    INVALID_BOX_BARCODE = 3
    TUBE_UNKNOWN = 4
    TUBE_EMPTY = 5
    TUBE_IN_USE = 6
    BOX_IN_USE = 7
    BOX_NOT_OPEN = 8
    BOX_EMPTY = 9
    BOX_UNKNOWN = 10
    OTHER_DISTRICT = 11
    INVALID_ROUND = 12
    INVALID_SITE = 13
    INVALID_VEHICLE = 14
    UNKNOWN_LAB = 15
    INVALID_RESULT = 16
    INVALID_CAPACITY = 17
    INVALID_COUNT = 18
    STORE_UNAVAILABLE = 20
    SHARD_UNAVAILABLE = 21


class StepAnswer(NamedTuple):
    """A shard's answer to one step (or to one tube of a batch step)."""

    status: StepStatus
    code: str
    reason: StepReason | None = None
    message: str = ""

    @classmethod
    def done(cls, code: str, message: str = "") -> StepAnswer:
        """Recorded now."""
        return cls(StepStatus.DONE, code, None, message)

    @classmethod
    def already(cls, code: str, message: str = "") -> StepAnswer:
        """Recorded before; nothing changed."""
        return cls(StepStatus.ALREADY_DONE, code, None, message)

    @classmethod
    def refused(cls, code: str, reason: StepReason, message: str) -> StepAnswer:
        """Refused for good."""
        return cls(StepStatus.REFUSED, code, reason, message)


class SealTube(NamedTuple):
    """A collector closes a tube; no one else may be bound to it."""

    event_id: bytes
    tube: str
    district: str
    collector: str
    device: str
    sealed_at_ms: int


class OpenBox(NamedTuple):
    """A transporter starts a trip of a box from a site."""

    event_id: bytes
    box: str
    district: str
    round: int
    site: str
    device: str
    at_ms: int


class LoadTubes(NamedTuple):
    """A transporter scans tubes into an open box."""

    event_id: bytes
    box: str
    district: str
    tubes: tuple[str, ...]
    device: str
    at_ms: int


class DispatchBox(NamedTuple):
    """A transporter signs for a box and leaves for a lab."""

    event_id: bytes
    box: str
    district: str
    vehicle: str
    lab: str
    device: str
    at_ms: int


class ReceiveBox(NamedTuple):
    """A lab scans a box on arrival and each tube taken out of it."""

    event_id: bytes
    box: str
    district: str
    tubes: tuple[str, ...]
    lab: str
    device: str
    at_ms: int


class RecordResult(NamedTuple):
    """A lab's result for one tube."""

    tube: str
    district: str
    result: str
    lab: str
    device: str
    tested_at_ms: int
    at_ms: int


Step = SealTube | OpenBox | LoadTubes | DispatchBox | ReceiveBox | RecordResult
"""Anything a shard applies for the journey."""
