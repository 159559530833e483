"""Who was sampled, in compact form: registry positions and visitors' hashes.

A :class:`Participation` is a set of people: residents on the registry as a
roaring bitmap of their index positions (see :mod:`engine.registry_index`),
and everyone else (visitors, other document types) as their 16-byte look-up
hashes. Sets only grow and merge by union, so parts written by different
shards, or rebuilt twice, combine without double counting.

Stored layout: ``residents`` is the portable roaring serialisation;
``visitors`` is the sorted hashes concatenated, 16 bytes each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from pyroaring import BitMap

from engine.pii import LOOKUP_HASH_BYTES
from engine.registry_index import RegistryIndex, prefixes_of

__all__ = ["Participation"]


@dataclass
class Participation:
    """People sampled, as registry positions under one index version.

    Attributes:
        version: the registry version ``residents`` positions refer to.
        residents: positions of registry residents sampled.
        visitors: look-up hashes of people sampled who are not on it.
    """

    version: int = 0
    residents: BitMap = field(default_factory=BitMap)
    visitors: set[bytes] = field(default_factory=set)

    @property
    def sampled(self) -> int:
        """Distinct people in the set."""
        return len(self.residents) + len(self.visitors)

    def add(self, index: RegistryIndex, hashes: Iterable[bytes]) -> None:
        """Add people by look-up hash; ``index`` must be of :attr:`version`."""
        listed = list(hashes)
        if not listed:
            return
        prefixes = prefixes_of(listed)
        where = np.searchsorted(index.prefixes, prefixes) if index.size else None
        for position, doc_hash in enumerate(listed):
            if where is not None:
                spot = int(where[position])
                if spot < index.size and index.prefixes[spot] == prefixes[position]:
                    self.residents.add(spot)
                    continue
            self.visitors.add(doc_hash)

    def update(self, other: Participation) -> None:
        """Union ``other`` into this set; both must be of the same version."""
        if other.version != self.version:
            raise ValueError(
                f"cannot merge version {other.version} into {self.version}"
            )
        self.residents |= other.residents
        self.visitors |= other.visitors

    def rebased(self, old: RegistryIndex, new: RegistryIndex) -> Participation:
        """The same people under a newer index (registries only grow).

        Args:
            old: the index of :attr:`version`.
            new: the index to move to.
        """
        if old.version != self.version:
            raise ValueError(f"index {old.version} is not version {self.version}")
        result = Participation(new.version)
        positions = np.fromiter(self.residents, np.int64, len(self.residents))
        found, lost = new.locate(old.prefixes[positions])
        result.residents = BitMap(found.astype(np.uint32))
        if lost.size:
            raise ValueError(
                f"{lost.size} residents of version {old.version} are not on"
                f" version {new.version}"
            )
        result.add(new, self.visitors)
        return result

    def to_blobs(self) -> tuple[bytes, bytes]:
        """(residents, visitors) blobs for the store."""
        self.residents.run_optimize()
        return self.residents.serialize(), b"".join(sorted(self.visitors))

    @classmethod
    def from_blobs(
        cls, version: int, residents: bytes, visitors: bytes
    ) -> Participation:
        """Inverse of :meth:`to_blobs`."""
        size = LOOKUP_HASH_BYTES
        return cls(
            version,
            BitMap.deserialize(residents) if residents else BitMap(),
            {visitors[i : i + size] for i in range(0, len(visitors), size)},
        )
