"""Operator look-up of a person's registrations by ID number, shown masked.

The number is hashed with the deployment's look-up key (as the shards do) and
``registrations_by_person`` is read by that hash; the number itself is never
stored, logged or shown unmasked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.config import Settings
from engine.documents import DocumentType, InvalidDocument, normalize_document
from engine.pii import Keyring, PiiCipher, mask_document
from engine.store import CqlStore

__all__ = ["LookupResult", "PersonLookup"]

_BY_PERSON = (
    "SELECT received_at, round, district, site, tube FROM"
    " {ks}.registrations_by_person WHERE doc_hash = ? LIMIT 50"
)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What an operator sees for one look-up."""

    masked: str
    valid: bool
    rows: tuple[dict[str, str], ...] = ()


class PersonLookup:
    """Finds a resident ID number's registrations, masked."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store = CqlStore(settings)
        self._cipher: PiiCipher | None = None

    def find(self, raw_number: str) -> LookupResult:
        """Look up one resident ID card number (blocking)."""
        raw = raw_number.strip()
        try:
            number = normalize_document(
                DocumentType.RESIDENT_ID_CARD, raw, dt.date.today()
            )
        except InvalidDocument:
            return LookupResult(masked=mask_document(raw), valid=False)
        if self._cipher is None:
            self._cipher = PiiCipher(Keyring.load(self._settings.keys_file))
        digest = self._cipher.lookup_hash(int(DocumentType.RESIDENT_ID_CARD), number)
        statement = self._store.prepare(_BY_PERSON)
        rows = self._store.session.execute(
            statement, (digest,), execution_profile="lookup"
        )
        return LookupResult(
            masked=mask_document(number),
            valid=True,
            rows=tuple(
                {
                    "received": f"{row.received_at:%Y-%m-%d %H:%M:%S}",
                    "round": str(row.round),
                    "district": row.district,
                    "site": row.site,
                    "tube": row.tube,
                }
                for row in rows
            ),
        )
