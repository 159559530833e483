"""The gateway's checks on an incoming registration, before anything is stored.

Every rule here states what is accepted; a registration that breaks one is
answered REJECTED with a machine-readable :class:`RejectReason` and a message
for the collector that names the field and the rule, never the person's data.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from dataclasses import dataclass

from engine.auth import AuthenticatedDevice
from engine.barcodes import BarcodeError, parse_tube_code
from engine.city import City
from engine.documents import DocumentType, InvalidDocument, normalize_document
from engine.registration import Registration, RejectReason
from sieve.v1 import ingest_pb2

__all__ = ["RegistrationValidator", "Rejection", "check_name"]

MAX_NAME_CHARS = 30
MAX_ROUND = 100_000
_NAME_CHARS = re.compile(
    "^["
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # CJK
    "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"  # Latin
    "\u00b7\u2022\u30fb\u2027 .'\\-"  # middle dots, space, . ' -
    "]+$"
)
_HAS_LETTER = re.compile("[^\u00b7\u2022\u30fb\u2027 .'\\-]")
_COLLECTOR = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A registration refused for good, with the reason the device is sent."""

    reason: RejectReason
    message: str


def check_name(raw: str) -> str | Rejection:
    """Return the normalised name, or the rule it breaks.

    Names are 1-30 characters of Chinese characters, Latin letters, spaces,
    hyphens, apostrophes, full stops and the middle dot used between the parts
    of minority and foreign names; no digits or control characters.
    """
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        return Rejection(RejectReason.INVALID_NAME, "name is empty")
    if len(name) > MAX_NAME_CHARS:
        return Rejection(
            RejectReason.INVALID_NAME,
            f"name has {len(name)} characters, at most {MAX_NAME_CHARS} allowed",
        )
    if not _NAME_CHARS.match(name) or not _HAS_LETTER.search(name):
        return Rejection(
            RejectReason.INVALID_NAME,
            "name may hold only Chinese or Latin letters, spaces, - ' . and ·",
        )
    return name


class RegistrationValidator:
    """Turns a device's registration into a :class:`Registration` or a rejection.

    Pure and synchronous: the gateway calls it once per message on its event
    loop, so it does no I/O.
    """

    def __init__(
        self, city: City, *, max_capture_age_h: float, max_clock_skew_s: float
    ) -> None:
        self._city = city
        self._max_age_ms = int(max_capture_age_h * 3_600_000)
        self._max_skew_ms = int(max_clock_skew_s * 1000)

    def validate(
        self,
        message: ingest_pb2.Registration,
        device: AuthenticatedDevice,
        received_at_ms: int,
        attempt: bytes,
    ) -> Registration | Rejection:
        """Check every field of one registration.

        Args:
            message: the registration as the device sent it.
            device: the authenticated sender.
            received_at_ms: gateway clock at arrival.
            attempt: 16 bytes naming this receipt (see Registration.attempt).

        Returns:
            The normalised registration, or the first rule it breaks.
        """
        try:
            registration_id = uuid.UUID(message.registration_id).bytes
        except ValueError:
            return Rejection(
                RejectReason.INVALID_REGISTRATION_ID, "registration_id must be a UUID"
            )
        if not 1 <= message.round <= MAX_ROUND:
            return Rejection(
                RejectReason.INVALID_ROUND, f"round must be 1..{MAX_ROUND}"
            )
        try:
            tube = parse_tube_code(message.tube_barcode)
        except BarcodeError as exc:
            return Rejection(RejectReason.INVALID_TUBE_BARCODE, str(exc))
        if not _COLLECTOR.match(message.collector_id):
            return Rejection(
                RejectReason.INVALID_COLLECTOR,
                "collector_id must be 1-32 letters, digits, - or _",
            )

        district = self._city.district_of_site(message.site_id)
        if district is None:
            return Rejection(RejectReason.UNKNOWN_SITE, "site_id is not a known site")
        if district != device.district:
            return Rejection(
                RejectReason.SITE_NOT_ALLOWED,
                f"device serves district {device.district}, site is in {district}",
            )

        if tube.district != district:
            return Rejection(
                RejectReason.TUBE_OTHER_DISTRICT,
                f"tube belongs to district {tube.district}, site is in {district}",
            )

        captured = message.captured_at_ms
        if captured > received_at_ms + self._max_skew_ms:
            return Rejection(
                RejectReason.INVALID_CAPTURED_AT, "captured_at is in the future"
            )
        if captured < received_at_ms - self._max_age_ms:
            return Rejection(
                RejectReason.INVALID_CAPTURED_AT,
                "captured_at is older than the accepted backlog",
            )

        name = check_name(message.name)
        if isinstance(name, Rejection):
            return name
        try:
            doc_type = DocumentType(message.document_type)
        except ValueError:
            return Rejection(
                RejectReason.INVALID_DOCUMENT_TYPE,
                "document_type must be one of "
                + ", ".join(member.name for member in DocumentType),
            )
        today = dt.datetime.fromtimestamp(received_at_ms / 1000, dt.UTC).date()
        try:
            number = normalize_document(doc_type, message.document_number, today)
        except InvalidDocument as exc:
            return Rejection(
                RejectReason.INVALID_DOCUMENT_NUMBER,
                f"{doc_type.name} number: {exc.detail}",
            )

        return Registration(
            registration_id=registration_id,
            round=message.round,
            tube=tube.code,
            name=name,
            doc_type=int(doc_type),
            doc_number=number,
            site=message.site_id,
            district=district,
            device=device.id,
            collector=message.collector_id,
            captured_at_ms=captured,
            received_at_ms=received_at_ms,
            attempt=attempt,
        )
