"""The registry's resident index: doc_hash prefix -> position, and district.

Each resident is a position in ``[0, size)``: the rank of the first 8 bytes
of its look-up hash (read as a big-endian uint64) among all residents'. The
index is two numpy arrays, sorted prefixes and one district code byte per
position, so a hash maps to its position by binary search and per-round
participation is a roaring bitmap of positions.

NOTE: two residents whose hashes share the first 8 bytes would share a
position; with 14 million residents the odds are about 5 in a million per
registry, and the importer refuses the second one by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

__all__ = [
    "CHUNK_RESIDENTS",
    "RegistryIndex",
    "doc_prefix",
    "prefix_to_signed",
    "signed_to_prefix",
]

CHUNK_RESIDENTS = 131_072
"""Residents per stored index chunk: 1 MiB of prefixes, under cell limits."""

Prefixes = npt.NDArray[np.uint64]


def doc_prefix(doc_hash: bytes) -> int:
    """The uint64 a look-up hash is indexed by: its first 8 bytes, big-endian."""
    return int.from_bytes(doc_hash[:8], "big")


def prefix_to_signed(prefix: int) -> int:
    """The same 64 bits as a CQL bigint."""
    return prefix - (1 << 64) if prefix >= 1 << 63 else prefix


def signed_to_prefix(value: int) -> int:
    """Inverse of :func:`prefix_to_signed`."""
    return value + (1 << 64) if value < 0 else value


def prefixes_of(hashes: Iterable[bytes]) -> Prefixes:
    """Prefixes of many look-up hashes, in the given order."""
    joined = b"".join(h[:8] for h in hashes)
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64)


@dataclass(frozen=True)
class RegistryIndex:
    """One published version of the registry's resident index.

    Attributes:
        version: the published version (0: no registry yet, empty).
        prefixes: sorted unique uint64 hash prefixes.
        codes: district code per position, indexing ``districts``.
        districts: district names by code.
    """

    version: int
    prefixes: Prefixes
    codes: npt.NDArray[np.uint8]
    districts: tuple[str, ...]
    _by_district: dict[str, BitMap] = field(default_factory=dict, compare=False)

    @classmethod
    def empty(cls) -> RegistryIndex:
        """The index before any registry was imported."""
        return cls(0, np.zeros(0, np.uint64), np.zeros(0, np.uint8), ())

    @classmethod
    def build(
        cls, version: int, prefixes: Prefixes, districts: Sequence[str]
    ) -> RegistryIndex:
        """Sort residents into an index.

        Args:
            version: version to publish it as.
            prefixes: one prefix per resident, unique.
            districts: the district of each resident, same order.
        """
        names = tuple(sorted(set(districts)))
        if len(names) > 255:
            raise ValueError(f"at most 255 districts, got {len(names)}")
        code_of = {name: code for code, name in enumerate(names)}
        codes = np.fromiter((code_of[d] for d in districts), np.uint8, len(districts))
        return cls.from_codes(version, prefixes, codes, names)

    @classmethod
    def from_codes(
        cls,
        version: int,
        prefixes: Prefixes,
        codes: npt.NDArray[np.uint8],
        districts: tuple[str, ...],
    ) -> RegistryIndex:
        """An index from unsorted prefixes and codes (sorted here)."""
        order = np.argsort(prefixes, kind="stable")
        return cls(version, prefixes[order], codes[order], districts)

    @property
    def size(self) -> int:
        """Residents on the registry."""
        return int(self.prefixes.size)

    def locate(self, prefixes: Prefixes) -> tuple[npt.NDArray[np.int64], Prefixes]:
        """Positions of the given prefixes that are on the registry.

        Returns:
            (positions of those found, the prefixes not found).
        """
        if self.size == 0:
            return np.zeros(0, np.int64), prefixes
        where = np.searchsorted(self.prefixes, prefixes)
        clipped = np.minimum(where, self.size - 1)
        found = self.prefixes[clipped] == prefixes
        return where[found].astype(np.int64), prefixes[~found]

    def position(self, prefix: int) -> int | None:
        """Position of one prefix, or None when not on the registry."""
        found, _ = self.locate(np.array([prefix], np.uint64))
        return int(found[0]) if found.size else None

    def district_of(self, position: int) -> str:
        """District of the resident at ``position``."""
        return self.districts[int(self.codes[position])]

    def residents_of(self, district: str) -> BitMap:
        """Positions of every resident registered in ``district`` (cached)."""
        cached = self._by_district.get(district)
        if cached is None:
            if district not in self.districts:
                cached = BitMap()
            else:
                code = self.districts.index(district)
                cached = BitMap(np.flatnonzero(self.codes == code).astype(np.uint32))
            self._by_district[district] = cached
        return cached

    def population(self) -> dict[str, int]:
        """Residents per district."""
        counts = np.bincount(self.codes, minlength=len(self.districts))
        return {name: int(counts[code]) for code, name in enumerate(self.districts)}

    def chunks(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(chunk number, prefixes blob, codes blob) for storing."""
        for number, start in enumerate(range(0, self.size, CHUNK_RESIDENTS)):
            end = start + CHUNK_RESIDENTS
            yield (
                number,
                self.prefixes[start:end].astype("<u8").tobytes(),
                self.codes[start:end].tobytes(),
            )

    @classmethod
    def from_chunks(
        cls,
        version: int,
        districts: tuple[str, ...],
        chunks: Sequence[tuple[bytes, bytes]],
    ) -> RegistryIndex:
        """Rebuild an index from its stored chunks, in chunk order."""
        prefixes = np.frombuffer(b"".join(p for p, _ in chunks), "<u8")
        codes = np.frombuffer(b"".join(c for _, c in chunks), np.uint8)
        return cls(version, prefixes.astype(np.uint64), codes.copy(), districts)

    def merged(self, other: RegistryIndex, version: int) -> RegistryIndex:
        """This index with ``other``'s residents added (``other`` wins on district).

        Residents are never removed, so positions of an older version map
        into a newer one by prefix.
        """
        names = tuple(sorted(set(self.districts) | set(other.districts)))
        remap_self = _code_map(self.districts, names)
        remap_other = _code_map(other.districts, names)
        keep = ~np.isin(self.prefixes, other.prefixes, assume_unique=True)
        prefixes = np.concatenate([self.prefixes[keep], other.prefixes])
        codes = np.concatenate(
            [remap_self[self.codes[keep]], remap_other[other.codes]]
        ).astype(np.uint8)
        return RegistryIndex.from_codes(version, prefixes, codes, names)


def _code_map(old: tuple[str, ...], new: tuple[str, ...]) -> npt.NDArray[np.uint8]:
    return np.array([new.index(name) for name in old] or [0], np.uint8)
