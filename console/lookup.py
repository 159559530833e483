"""The operator desk: audited ID look-ups and the corrections queue, for the console.

Look-ups go through :class:`engine.lookup.ResidentLookup`, the same logic the
Residents gRPC service uses, so every operator view writes the same audit
rows (actor kind ``operator``, the console user's name). Numbers are hashed
with the deployment's look-up key; they are never stored, logged or shown
unmasked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from engine.city import City, load_city
from engine.config import Settings
from engine.corrections import CorrectionQueue
from engine.corrections_candidates import CandidateFinder
from engine.corrections_merge import RegistrationEditor
from engine.documents import DocumentType
from engine.lookup import Actor, RequestInvalid, ResidentLookup
from engine.pii import Keyring, PiiCipher, mask_document
from engine.store import CqlStore

__all__ = ["LookupResult", "PersonLookup"]


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What an operator sees for one look-up."""

    masked: str
    valid: bool
    rows: tuple[dict[str, str], ...] = ()
    reason: str = ""


class PersonLookup:
    """Look-ups and corrections for console operators (one store connection).

    Call :meth:`ready` (or any method, which calls it) from the event loop;
    connecting is blocking and runs in a thread once.
    """

    def __init__(self, settings: Settings, city: City | None = None) -> None:
        self._settings = settings
        self.city = city or load_city(
            settings.city_config, default_shards=settings.shards_per_district
        )
        self._store = CqlStore(settings)
        self._lock = asyncio.Lock()
        self._lookup: ResidentLookup | None = None
        self._corrections: CorrectionQueue | None = None
        self._finder: CandidateFinder | None = None

    async def ready(self) -> None:
        """Connect and prepare statements, once."""
        async with self._lock:
            if self._lookup is None:
                await asyncio.to_thread(self._build)

    def _build(self) -> None:
        cipher = PiiCipher(Keyring.load(self._settings.keys_file))
        store = self._store
        store.connect()
        self._corrections = CorrectionQueue(
            store, cipher, self.city, RegistrationEditor(store, cipher)
        )
        self._finder = CandidateFinder(store, cipher, self.city)
        self._lookup = ResidentLookup(
            store, cipher, self.city, max_records=self._settings.lookup_max_records
        )

    async def corrections(self) -> CorrectionQueue:
        """The corrections queue."""
        await self.ready()
        assert self._corrections is not None  # set by ready()
        return self._corrections

    async def finder(self) -> CandidateFinder:
        """The candidate search."""
        await self.ready()
        assert self._finder is not None  # set by ready()
        return self._finder

    async def find(
        self,
        user: str,
        raw_number: str,
        doc_type: int = int(DocumentType.RESIDENT_ID_CARD),
    ) -> LookupResult:
        """Look up one document number as console user ``user`` (audited)."""
        await self.ready()
        assert self._lookup is not None  # set by ready()
        try:
            answer = await self._lookup.lookup(
                Actor("operator", user), doc_type, raw_number
            )
        except RequestInvalid as exc:
            return LookupResult(
                masked=mask_document(raw_number.strip()),
                valid=False,
                reason=exc.message,
            )
        return LookupResult(
            masked=answer.masked,
            valid=True,
            rows=tuple(
                {
                    "sampled": _local(record.captured_at_ms),
                    "round": str(record.round),
                    "district": record.district,
                    "site": f"{record.site} {record.site_name}".strip(),
                    "tube": record.tube,
                }
                for record in answer.records
            ),
        )

    def close(self) -> None:
        """Close the store connection."""
        self._store.close()


def _local(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
