"""Coverage per district: people sampled against the expected population.

Sampled is what :func:`engine.rounds.coverage` counts: distinct people in
the round's flushed participation bitmaps. Expected is the population
registry's residents of the district when a registry was imported, else
the city file's population; :class:`CoverageView` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.city import City
from engine.pii import PiiCipher
from engine.rounds import RoundsReader
from engine.store import CqlStore

__all__ = [
    "FROM_CITY",
    "FROM_REGISTRY",
    "CoverageReader",
    "CoverageView",
    "build_coverage",
]

FROM_REGISTRY = "registry"
FROM_CITY = "city file"


@dataclass(frozen=True, slots=True)
class CoverageView:
    """Sampled and expected per district, and where expected came from."""

    taken_at_ms: int
    sampled: Mapping[str, int] = field(default_factory=dict)
    expected: Mapping[str, int] = field(default_factory=dict)
    expected_from: str = FROM_CITY
    """:data:`FROM_REGISTRY` or :data:`FROM_CITY`."""
    registry_version: int = 0

    def share(self, district: str) -> float | None:
        """Sampled over expected (0..1+), or None without an expectation."""
        expected = self.expected.get(district, 0)
        return self.sampled.get(district, 0) / expected if expected > 0 else None

    def describe(self) -> str:
        """One line naming the source of the expected population."""
        if self.expected_from == FROM_REGISTRY:
            return (
                "Expected: residents on the population registry"
                f" (version {self.registry_version})."
            )
        return "Expected: the city file's population (no registry imported)."


def build_coverage(
    taken_at_ms: int,
    city: City,
    sampled: Mapping[str, int],
    registry: Mapping[str, int] | None,
    registry_version: int = 0,
) -> CoverageView:
    """Every city district's sampled and expected.

    Args:
        taken_at_ms: when the numbers were read.
        city: the districts and their census populations.
        sampled: distinct people sampled per district (missing: none).
        registry: residents per district on the registry, or None when no
            registry was imported (the city file's populations are used).
        registry_version: the registry version read.
    """
    codes = list(city.districts)
    if registry is None:
        expected = {code: city.districts[code].population for code in codes}
        source = FROM_CITY
    else:
        expected = {code: int(registry.get(code, 0)) for code in codes}
        source = FROM_REGISTRY
    return CoverageView(
        taken_at_ms=taken_at_ms,
        sampled={code: int(sampled.get(code, 0)) for code in codes},
        expected=expected,
        expected_from=source,
        registry_version=registry_version if registry is not None else 0,
    )


class CoverageReader:
    """Reads coverage as :func:`engine.rounds.coverage` does, keeping the index.

    :func:`engine.rounds.coverage` loads the registry index on every call; the
    console keeps one :class:`~engine.rounds.RoundsReader`, whose index is
    cached by version, so a refresh reads the version row and the round's
    participation parts only.

    Args:
        store: connected store.
        cipher: needed by the registry reader.
        city: districts and census populations for the fallback.
    """

    def __init__(self, store: CqlStore, cipher: PiiCipher, city: City) -> None:
        self._reader = RoundsReader(store, cipher)
        self._city = city

    async def read(self, round_no: int, now_ms: int) -> CoverageView:
        """Sampled and expected per district now.

        Raises:
            StoreUnavailable: a read failed.
        """
        # TODO: every participation part of the round is read on each call,
        # changed or not; parts carry no version to ask for changes only.
        index = await self._reader.index()
        current = await self._reader.load_round(round_no, index)
        sampled = {district: part.sampled for district, part in current.items()}
        registry = index.population() if index.version else None
        return build_coverage(now_ms, self._city, sampled, registry, index.version)
