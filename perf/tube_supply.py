"""Allocated tube codes for simulated collectors, fetched a block per site."""

from __future__ import annotations

from collections import deque

from engine.config import Settings
from engine.store import CqlStore
from engine.tube_allocation import CAPACITIES, TubeAllocator

__all__ = ["TubeSupply"]


class TubeSupply:
    """Hands out real, allocated tube codes, as a site's printer would.

    Tubes come from :class:`~engine.tube_allocation.TubeAllocator` in blocks,
    so the load generator binds residents only to tubes the engine knows. Each
    process has its own supply; the allocator's compare-and-set keeps their
    blocks apart.

    Args:
        settings: where the store is.
        capacity: residents per tube (1, 10 or 20).
        block: tubes allocated per site at a time.
    """

    def __init__(self, settings: Settings, capacity: int, *, block: int = 500):
        if capacity not in CAPACITIES:
            raise ValueError(f"tube capacity must be one of {CAPACITIES}")
        self.capacity = capacity
        self._settings = settings
        self._block = block
        self._store: CqlStore | None = None
        self._free: dict[str, deque[str]] = {}

    def take(self, site: str) -> str:
        """A fresh tube code for a site (blocks briefly when a block runs out)."""
        free = self._free.setdefault(site, deque())
        if not free:
            free.extend(self._allocate(site))
        return free.popleft()

    def prefill(self, sites: set[str]) -> None:
        """Allocate a first block for each site now, before load starts."""
        for site in sorted(sites):
            self._free.setdefault(site, deque()).extend(self._allocate(site))

    def _allocate(self, site: str) -> list[str]:
        if self._store is None:
            self._store = CqlStore(self._settings)
            self._store.connect()
        allocator = TubeAllocator(self._store)
        return allocator.allocate(site, self._block, self.capacity, "perf").codes()

    def close(self) -> None:
        """Close the store connection, if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None
