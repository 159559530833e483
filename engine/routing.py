"""Where a registration goes: its district's shard, and the host serving it.

A district has one or more logical shards (``120116/0`` .. ``120116/3``); a
tube (or transport box) always maps to the same one, so one writer owns each
tube with all the registrations bound to it, and a resent registration (same
id, same tube) meets the shard that stored it. The
logical shards are packed onto a fixed number of shard hosts (Ray actor
processes), sized to the machines rather than to the city.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

from engine.city import City
from engine.registration import Registration, ShardAnswer

__all__ = ["DistrictRouter", "ShardItem", "ShardPool"]

ShardItem = tuple[str, Registration]
"""A registration with the logical shard that owns it."""


class ShardPool(Protocol):
    """What the gateway needs from the shards, whatever runs them."""

    async def write(self, host: int, batch: Sequence[ShardItem]) -> list[ShardAnswer]:
        """Store a batch on a shard host; one answer per item, in order.

        An answer is an :class:`Outcome`, or the :class:`RejectReason` a
        registration was refused for by its shard (a tube rule).

        Raises:
            StoreUnavailable: the store did not take the batch.
            ShardUnavailable: the shard could not be reached in time.
        """
        ...  # pragma: no cover


class DistrictRouter:
    """Maps registrations to logical shards and shards to hosts.

    Both maps are pure functions of the city file and the host count, so every
    gateway process routes identically without talking to the others.
    """

    def __init__(self, city: City, num_hosts: int) -> None:
        self._shards = {code: d.shards for code, d in city.districts.items()}
        self.num_hosts = num_hosts
        self.shard_ids = [
            f"{code}/{index}"
            for code, count in self._shards.items()
            for index in range(count)
        ]
        # Round-robin in a fixed order spreads each district's shards across
        # hosts, so one busy district does not load a single process.
        self._host_of = {
            shard_id: position % num_hosts
            for position, shard_id in enumerate(self.shard_ids)
        }

    def shard_for(self, district: str, key: bytes) -> str:
        """The logical shard owning a key (a tube or box code) in a district."""
        count = self._shards[district]
        if count == 1:
            return f"{district}/0"
        return f"{district}/{zlib.crc32(key) % count}"

    def host_for(self, shard_id: str) -> int:
        """Index of the host that serves a logical shard."""
        return self._host_of[shard_id]

    def shards_of_host(self, host: int) -> list[str]:
        """Every logical shard a host serves."""
        return [s for s, h in self._host_of.items() if h == host]
