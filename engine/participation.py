"""Per-round participation kept up to date as a shard host stores registrations.

Design. The shard host calls :meth:`ParticipationTracker.observe` with each
batch's freshly stored registrations (after their durable write). The
tracker keeps, per (round, district, shard), a :class:`Participation` (a
roaring bitmap of registry positions plus visitors' hashes) in memory and
flushes the changed ones every ``flush_s`` as blob rows of
``participation_parts``, each stamped with a watermark: the wall time of the
snapshot. The first time a shard sees a round in a district it writes a
marker row (``participation_rounds``).

Crash recovery. Parts are unions, so they may be rebuilt from any source
that covers them. A restarted host reads the markers of its districts, loads
its shards' stored parts, and replays the registrations of each (round,
district) received from the oldest of its watermarks (or first-seen times,
for a shard that never flushed) less ``replay_margin_s``, up to now, from
``registrations_by_minute`` and the main rows. A registration acked as
stored has its main row, so it is either in a flushed part, or received
after that part's watermark less the margin, or observed fresh by the new
incarnation. Replayed people are added to one of the host's shards in that
district: readers union every shard of a district, so where a person lands
does not matter. Flushing waits until recovery is done, so a smaller state
never overwrites a stored part.

NOTE: the margin must exceed the longest time between a gateway receiving a
registration and its shard storing it (batch waits, shard call timeouts,
retries); 10 minutes is far above the gateway's defaults.

Caps: one flush writes every changed part in full (a part of a busy
district at city scale is 1-2 MiB); reads during recovery keep at most 32
requests in flight. Readers see the state as of the last flush.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import structlog

from engine.participation_state import Participation
from engine.participation_store import (
    Marker,
    ParticipationStore,
    new_marker,
)
from engine.pii import PiiCipher
from engine.registration import Registration
from engine.registry import PopulationRegistry
from engine.registry_index import RegistryIndex
from engine.store import CqlStore

__all__ = ["ParticipationTracker", "district_of_shard"]

log = structlog.get_logger()

FLUSH_S = 5.0
"""Seconds between flushes of changed parts; what readers may lag by."""
REPLAY_MARGIN_S = 600.0
"""How far before a watermark recovery replays; see the module NOTE."""
RETRY_S = 2.0
"""Wait before retrying a failed recovery or flush."""

PartKey = tuple[int, str, str]
"""(round, district, shard)."""


def district_of_shard(shard_id: str) -> str:
    """The district of a logical shard id such as ``120101/0``."""
    return shard_id.rpartition("/")[0] or shard_id


class ParticipationTracker:
    """Maintains and flushes the participation of a host's shards.

    Args:
        store: connected store.
        cipher: computes the look-up hash of each registration's number.
        shard_ids: the logical shards of this host.
        flush_s: seconds between flushes.
        replay_margin_s: how far before a watermark recovery replays.
    """

    def __init__(
        self,
        store: CqlStore,
        cipher: PiiCipher,
        shard_ids: Sequence[str],
        *,
        flush_s: float = FLUSH_S,
        replay_margin_s: float = REPLAY_MARGIN_S,
    ) -> None:
        self.num_observed = 0
        self.num_flushes = 0
        self.num_replayed = 0
        self._cipher = cipher
        self._shards = list(shard_ids)
        self._flush_s = flush_s
        self._margin_ms = int(replay_margin_s * 1000)
        self._registry = PopulationRegistry(store, cipher)
        self._rows = ParticipationStore(store)
        self._index = RegistryIndex.empty()
        self._parts: dict[PartKey, Participation] = {}
        self._dirty: set[PartKey] = set()
        self._markers: list[Marker] = []
        self._marked: set[PartKey] = set()
        """Keys whose marker is known to be in the store."""
        self._recovered = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._log = log.bind(shards=len(self._shards))

    @property
    def recovered(self) -> bool:
        """Whether recovery finished and flushes may run."""
        return self._recovered.is_set()

    async def ensure_markers(self, items: Iterable[tuple[str, Registration]]) -> None:
        """Make the marker of every (round, district, shard) durable.

        Awaited by the shard writer before a batch's main rows, so a round
        that has any acknowledged registration always has its marker, and a
        restarted host replays it.

        Raises:
            StoreUnavailable: a marker was not written; the batch must not be
                acknowledged.
        """
        new = {
            (record.round, record.district, shard_id)
            for shard_id, record in items
            if (record.round, record.district, shard_id) not in self._marked
        }
        if not new:
            return
        await asyncio.gather(
            *(
                self._rows.write_marker(new_marker(district, round_no, shard))
                for round_no, district, shard in sorted(new)
            )
        )
        self._marked.update(new)

    def observe(self, shard_id: str, records: Iterable[Registration]) -> None:
        """Add freshly stored registrations; the ``on_stored`` hook of a shard."""
        by_key: dict[PartKey, list[bytes]] = {}
        for record in records:
            doc_hash = self._cipher.lookup_hash(record.doc_type, record.doc_number)
            by_key.setdefault((record.round, record.district, shard_id), []).append(
                doc_hash
            )
        for key, hashes in by_key.items():
            self._part(key).add(self._index, hashes)
            self._dirty.add(key)
            self.num_observed += len(hashes)

    def _part(self, key: PartKey) -> Participation:
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = Participation(self._index.version)
            round_no, district, shard = key
            self._markers.append(new_marker(district, round_no, shard))
        return part

    async def run(self) -> None:
        """Recover, then flush every ``flush_s`` until cancelled."""
        while not self.recovered:
            try:
                await self.recover()
            except Exception:  # noqa: BLE001 - recovery is retried, never dropped
                self._log.exception("participation_recovery_failed", retry_s=RETRY_S)
                await asyncio.sleep(RETRY_S)
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the loop outlives any one error
                self._log.exception("participation_flush_failed", retry_s=RETRY_S)

    async def recover(self) -> None:
        """Load the registry index, stored parts and replay; then allow flushes."""
        started = time.monotonic()
        await self._load_registry()
        districts = {district_of_shard(s) for s in self._shards}
        # Every round with an acknowledged registration has a marker: the
        # writer makes it durable before the batch's main rows.
        markers = await self._rows.markers(districts)
        self._marked.update(
            (m.round, m.district, m.shard) for m in markers if m.shard in self._shards
        )
        by_round: dict[tuple[int, str], list[Marker]] = {}
        for marker in markers:
            by_round.setdefault((marker.round, marker.district), []).append(marker)
        for (round_no, district), marks in by_round.items():
            await self._recover_round(round_no, district, marks)
        self._recovered.set()
        self._log.info(
            "participation_recovered",
            rounds=len(by_round),
            replayed=self.num_replayed,
            elapsed_ms=int((time.monotonic() - started) * 1000),
        )

    async def _recover_round(
        self, round_no: int, district: str, marks: list[Marker]
    ) -> None:
        mine = [s for s in self._shards if district_of_shard(s) == district]
        if not mine:
            return
        stored = await self._rows.parts(round_no, district)
        first_seen = {m.shard: m.first_seen_ms for m in marks}
        starts = []
        for shard in mine:
            found = stored.get(shard)
            if found is not None:
                part = await self._current(found.part)
                self._part((round_no, district, shard)).update(part)
                starts.append(found.watermark_ms)
            elif shard in first_seen:
                starts.append(first_seen[shard])
            else:
                # This shard may have stored registrations and died before
                # its marker was written: start where the district started.
                starts.append(min(first_seen.values()))
        now_ms = int(time.time() * 1000)
        hashes = await self._rows.replay(
            round_no, district, min(starts) - self._margin_ms, now_ms
        )
        key = (round_no, district, mine[0])
        self._part(key).add(self._index, hashes)
        self._dirty.add(key)
        self.num_replayed += len(hashes)

    async def _current(self, part: Participation) -> Participation:
        if part.version == self._index.version:
            return part
        old = await asyncio.to_thread(self._registry.load_index, part.version)
        return part.rebased(old, self._index)

    async def _load_registry(self) -> None:
        version = await asyncio.to_thread(self._registry.current_version)
        if version == self._index.version:
            return
        new = await asyncio.to_thread(self._registry.load_index, version)
        # No await from here on: observe() must not add under the old index
        # to a part already moved to the new one.
        old = self._index
        for key, part in self._parts.items():
            self._parts[key] = part.rebased(old, new)
            self._dirty.add(key)
        self._index = new
        self._log.info("participation_registry", version=new.version)

    async def flush(self) -> int:
        """Write new markers and every changed part; returns parts written.

        Waits for recovery first. A part whose write fails stays changed and
        is written by the next flush.
        """
        await self._recovered.wait()
        async with self._flushing:
            await self._load_registry()
            markers, self._markers = self._markers, []
            try:
                await asyncio.gather(*(self._rows.write_marker(m) for m in markers))
            except Exception:
                self._markers.extend(markers)
                raise

            # TODO: every changed part is rewritten whole (1-2 MiB for a busy
            # district at city scale, every flush_s); writing only the
            # positions added since the last flush would cut store traffic.
            watermark_ms = int(time.time() * 1000)
            keys, self._dirty = self._dirty, set()
            snapshot = {key: self._copy(key) for key in keys}
            results = await asyncio.gather(
                *(
                    self._rows.write_part(*key, part, watermark_ms)
                    for key, part in snapshot.items()
                ),
                return_exceptions=True,
            )
            clean = [k for k in self._parts if k not in keys]
            await asyncio.gather(
                *(self._rows.touch_part(*key, watermark_ms) for key in clean)
            )

            failed = [
                key
                for key, result in zip(snapshot, results, strict=True)
                if isinstance(result, BaseException)
            ]
            self._dirty.update(failed)
            self.num_flushes += 1
            if failed:
                self._log.warning(
                    "participation_flush_partial",
                    failed=len(failed),
                    next="written by the next flush",
                )
            return len(snapshot) - len(failed)

    def _copy(self, key: PartKey) -> Participation:
        part = self._parts[key]
        return Participation(part.version, part.residents.copy(), set(part.visitors))

    def stats(self) -> dict[str, int]:
        """Counters for the host's stats."""
        return {
            "participation_num_observed": self.num_observed,
            "participation_num_replayed": self.num_replayed,
            "participation_num_flushes": self.num_flushes,
            "participation_curr_parts": len(self._parts),
            "participation_curr_dirty": len(self._dirty),
            "participation_registry_version": self._index.version,
        }
