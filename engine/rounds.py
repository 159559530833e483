"""Round comparison and coverage, from the flushed participation bitmaps.

For a round N compared with earlier rounds M (or with the registry), per
district: the missed are those in M's district (or registered there) who
were sampled nowhere in N; the new are those sampled in N's district who
are in no M (or not on the registry). A person sampled in another district
of the same round is neither missed nor new. Everything here is set algebra
on :class:`~engine.participation_state.Participation`; the store is only read
to load them, so benchmarks run the same code on synthetic sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pyroaring import BitMap

from engine.participation_state import Participation
from engine.participation_store import ParticipationStore
from engine.pii import PiiCipher
from engine.registry import PopulationRegistry
from engine.registry_index import RegistryIndex
from engine.store import CqlStore

__all__ = [
    "DistrictDiff",
    "RoundsReader",
    "compare_registry",
    "compare_rounds",
    "coverage",
    "merge_rounds",
]


@dataclass
class DistrictDiff:
    """Who is missed and who is new in one district.

    Attributes:
        district: district code.
        missed: registry positions of the missed.
        missed_visitors: look-up hashes of missed people not on the registry.
        new: registry positions of the new.
        new_visitors: look-up hashes of new people not on the registry.
    """

    district: str
    missed: BitMap = field(default_factory=BitMap)
    missed_visitors: set[bytes] = field(default_factory=set)
    new: BitMap = field(default_factory=BitMap)
    new_visitors: set[bytes] = field(default_factory=set)

    @property
    def num_missed(self) -> int:
        """How many are missed."""
        return len(self.missed) + len(self.missed_visitors)

    @property
    def num_new(self) -> int:
        """How many are new."""
        return len(self.new) + len(self.new_visitors)


def merge_rounds(
    rounds: Iterable[Mapping[str, Participation]],
) -> dict[str, Participation]:
    """Per district, the union of several rounds (same registry version)."""
    merged: dict[str, Participation] = {}
    for by_district in rounds:
        for district, part in by_district.items():
            target = merged.get(district)
            if target is None:
                target = merged[district] = Participation(part.version)
            target.update(part)
    return merged


def _everyone(by_district: Mapping[str, Participation]) -> tuple[BitMap, set[bytes]]:
    parts = list(by_district.values())
    residents = BitMap.union(*(p.residents for p in parts)) if parts else BitMap()
    visitors: set[bytes] = set().union(*(p.visitors for p in parts))
    return residents, visitors


def compare_rounds(
    current: Mapping[str, Participation], baseline: Mapping[str, Participation]
) -> dict[str, DistrictDiff]:
    """Missed and new per district of ``current`` against ``baseline``.

    Both must be under the same registry version; use
    :func:`merge_rounds` to make one baseline of several rounds.
    """
    now_residents, now_visitors = _everyone(current)
    then_residents, then_visitors = _everyone(baseline)
    result = {}
    for district in sorted(set(current) | set(baseline)):
        then = baseline.get(district) or Participation()
        now = current.get(district) or Participation()
        result[district] = DistrictDiff(
            district,
            missed=then.residents - now_residents,
            missed_visitors=then.visitors - now_visitors,
            new=now.residents - then_residents,
            new_visitors=now.visitors - then_visitors,
        )
    return result


def compare_registry(
    current: Mapping[str, Participation], index: RegistryIndex
) -> dict[str, DistrictDiff]:
    """Missed (registered in the district, sampled nowhere) and new (not
    registered) per district of ``current``, which must be under ``index``."""
    now_residents, _ = _everyone(current)
    result = {}
    for district in sorted(set(index.districts) | set(current)):
        now = current.get(district) or Participation()
        result[district] = DistrictDiff(
            district,
            missed=index.residents_of(district) - now_residents,
            new_visitors=set(now.visitors),
        )
    return result


class RoundsReader:
    """Loads rounds' participation from the store under the current registry.

    Args:
        store: connected store.
        cipher: needed by the registry reader.
    """

    def __init__(self, store: CqlStore, cipher: PiiCipher) -> None:
        self.registry = PopulationRegistry(store, cipher)
        self._rows = ParticipationStore(store)
        self._indexes: dict[int, RegistryIndex] = {}

    async def index(self, version: int | None = None) -> RegistryIndex:
        """A registry index (the current one by default), cached by version."""
        if version is None:
            version = await asyncio.to_thread(self.registry.current_version)
        cached = self._indexes.get(version)
        if cached is None:
            cached = await asyncio.to_thread(self.registry.load_index, version)
            self._indexes[version] = cached
        return cached

    async def load_round(
        self, round_no: int, index: RegistryIndex
    ) -> dict[str, Participation]:
        """Per district, everyone sampled in a round, as last flushed."""
        markers = await self._rows.markers()
        districts = sorted({m.district for m in markers if m.round == round_no})
        loaded = await asyncio.gather(
            *(self._rows.parts(round_no, district) for district in districts)
        )
        result = {}
        for district, parts in zip(districts, loaded, strict=True):
            union = Participation(index.version)
            for stored in parts.values():
                part = stored.part
                if part.version != index.version:
                    part = part.rebased(await self.index(part.version), index)
                union.update(part)
            result[district] = union
        return result

    async def compare(
        self, round_no: int, against: Sequence[int] | None
    ) -> tuple[RegistryIndex, dict[str, DistrictDiff]]:
        """Compare a round with earlier rounds, or with the registry (None).

        Returns:
            The registry index the positions refer to, and the diffs.
        """
        index = await self.index()
        current = await self.load_round(round_no, index)
        if against is None:
            return index, compare_registry(current, index)
        baseline = merge_rounds(
            [await self.load_round(other, index) for other in against]
        )
        return index, compare_rounds(current, baseline)


async def coverage(
    store: CqlStore, cipher: PiiCipher, round_no: int
) -> dict[str, tuple[int, int]]:
    """Per district: (people sampled in the round so far, expected population).

    Sampled counts distinct people (registry residents and visitors) sampled
    at the district's sites, as of the shards' last flush; expected is the
    registry's residents of the district (0 when the registry lacks it).
    """
    reader = RoundsReader(store, cipher)
    index = await reader.index()
    current = await reader.load_round(round_no, index)
    expected = index.population()
    return {
        district: (
            current[district].sampled if district in current else 0,
            expected.get(district, 0),
        )
        for district in sorted(set(expected) | set(current))
    }
