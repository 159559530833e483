"""What a correction request is: its states, fields, events and errors."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from engine.exceptions import IngestError
from engine.lookup import RequestInvalid
from engine.pii import mask_document, mask_name

__all__ = [
    "Correction",
    "CorrectionConflict",
    "CorrectionEvent",
    "CorrectionInput",
    "CorrectionNotFound",
    "CorrectionState",
    "CorrectionSummary",
    "normalize_phone",
]

_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{9,11}$")


class CorrectionState(enum.StrEnum):
    """Where a request stands."""

    OPEN = "OPEN"
    MERGING = "MERGING"
    MERGED = "MERGED"
    REJECTED = "REJECTED"
    NOT_SAMPLED = "NOT_SAMPLED"


class CorrectionNotFound(IngestError):
    """No correction request has that id."""


class CorrectionConflict(IngestError):
    """The request is no longer in a state that allows the change asked for."""


@dataclass(frozen=True, slots=True)
class CorrectionInput:
    """A request as submitted, before any check."""

    name: str
    doc_type: int
    number: str
    phone: str
    round: int = 0
    site: str = ""
    sampled_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class CorrectionSummary:
    """One line of the queue."""

    id: str
    state: str
    submitted_at_ms: int
    masked: str
    source: str
    site: str


@dataclass(frozen=True, slots=True)
class Correction:
    """A request with its personal fields opened (for matching, never shown)."""

    id: str
    state: CorrectionState
    submitted_at_ms: int
    source: str
    name: str
    doc_type: int
    number: str
    phone: str
    round: int
    site: str
    sampled_at_ms: int
    resolved_at_ms: int
    resolved_by: str
    registration_id: str
    note: str

    @property
    def masked(self) -> str:
        """The number as operators see it."""
        return mask_document(self.number)

    @property
    def masked_name(self) -> str:
        """The name as operators see it."""
        return mask_name(self.name)

    @property
    def masked_phone(self) -> str:
        """The phone with only its last four digits shown."""
        return "*" * (len(self.phone) - 4) + self.phone[-4:]


@dataclass(frozen=True, slots=True)
class CorrectionEvent:
    """One audited step of a request."""

    at_ms: int
    actor: str
    action: str
    detail: str


def normalize_phone(raw: str) -> str:
    """Return a phone number as digits only, checked.

    Mobile numbers are 11 digits from 13-19; landlines a 0-led area code and
    number, 10-12 digits. Spaces, hyphens and a +86 or 86 prefix are dropped.

    Raises:
        RequestInvalid: empty, or not a mobile or landline number.
    """
    digits = re.sub(r"[\s\-()]", "", raw)
    if not digits:
        raise RequestInvalid("phone is empty", field="phone", rule="required")
    digits = digits.removeprefix("+86")
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not (_MOBILE.match(digits) or _LANDLINE.match(digits)):
        raise RequestInvalid(
            "phone must be an 11-digit mobile number (13-19...) or a landline"
            " with its 0-led area code",
            field="phone",
            rule="format",
        )
    return digits
