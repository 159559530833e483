"""Round comparison at city scale: two 14M-resident rounds and a 14M registry.

Synthesises the registry index and each round's per-shard parts directly
(not through gRPC or the store), then runs the production code: parts
through their stored blob form, unions per district, round against round,
round against registry, and the prefixes of every missed resident (what the
export looks up). ``python -m perf.rounds_bench [--residents N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from pyroaring import BitMap

from engine.participation_state import Participation
from engine.registry_index import RegistryIndex
from engine.rounds import compare_registry, compare_rounds, merge_rounds
from perf.registry_gen import city_districts

__all__ = ["main", "synthesise_round"]

T = TypeVar("T")
SHARDS_PER_DISTRICT = 2
VISITOR_SHARE = 0.03


def _timed(timings: dict[str, float], name: str, call: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = call()
    timings[name] = round(time.perf_counter() - started, 2)
    return result


def synthesise_round(
    index: RegistryIndex, rng: np.random.Generator, share: float
) -> list[tuple[str, Participation]]:
    """Per-shard parts of a round sampling ``share`` of residents, with visitors.

    Residents are sampled in their own district; visitors are random hashes.
    """
    sampled = rng.random(index.size) < share
    parts = []
    visitors = rng.bytes(16 * int(index.size * VISITOR_SHARE))
    per_part = len(visitors) // 16 // (len(index.districts) * SHARDS_PER_DISTRICT)
    for code, district in enumerate(index.districts):
        mine = np.flatnonzero(sampled & (index.codes == code)).astype(np.uint32)
        for shard in range(SHARDS_PER_DISTRICT):
            start = (code * SHARDS_PER_DISTRICT + shard) * per_part * 16
            part = Participation(
                index.version,
                BitMap(mine[shard::SHARDS_PER_DISTRICT]),
                {visitors[i : i + 16] for i in range(start, start + per_part * 16, 16)},
            )
            parts.append((district, part))
    return parts


def load_round(
    version: int, blobs: Sequence[tuple[str, tuple[bytes, bytes]]]
) -> dict[str, Participation]:
    """Stored blobs back to per-district unions, as the store reader does."""
    result: dict[str, Participation] = {}
    for district, (residents, visitors) in blobs:
        part = Participation.from_blobs(version, residents, visitors)
        result.setdefault(district, Participation(version)).update(part)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print one JSON line of timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--residents", type=int, default=14_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    timings: dict[str, float] = {}

    districts, weights = zip(*city_districts(), strict=True)
    share = np.array(weights, float) / sum(weights)
    prefixes = np.unique(rng.integers(0, 2**63, args.residents, np.uint64) * 2)
    codes = rng.choice(len(districts), prefixes.size, p=share).astype(np.uint8)
    index = RegistryIndex.from_codes(1, prefixes, codes, tuple(districts))
    then = synthesise_round(index, rng, 0.95)
    now = synthesise_round(index, rng, 0.93)
    then_blobs = [(d, p.to_blobs()) for d, p in then]
    now_blobs = [(d, p.to_blobs()) for d, p in now]
    blob_mib = sum(len(r) + len(v) for _, (r, v) in now_blobs) / 2**20

    started = time.perf_counter()
    current = _timed(timings, "load_n_s", lambda: load_round(1, now_blobs))
    baseline = _timed(
        timings, "load_m_s", lambda: merge_rounds([load_round(1, then_blobs)])
    )
    rounds = _timed(
        timings, "compare_rounds_s", lambda: compare_rounds(current, baseline)
    )
    registry = _timed(
        timings, "compare_registry_s", lambda: compare_registry(current, index)
    )

    def missed_prefixes() -> int:
        total = 0
        for diff in (*rounds.values(), *registry.values()):
            positions = np.fromiter(diff.missed, np.int64, len(diff.missed))
            total += int(index.prefixes[positions].size)
        return total

    listed = _timed(timings, "missed_prefixes_s", missed_prefixes)
    timings["total_s"] = round(time.perf_counter() - started, 2)
    print(
        json.dumps(
            {
                "residents": index.size,
                "districts": len(districts),
                "parts_per_round": len(now),
                "round_n_blobs_mib": round(blob_mib, 1),
                "missed_vs_round": sum(d.num_missed for d in rounds.values()),
                "new_vs_round": sum(d.num_new for d in rounds.values()),
                "missed_vs_registry": sum(d.num_missed for d in registry.values()),
                "missed_listed": listed,
                **timings,
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            }
        )
    )


if __name__ == "__main__":
    main()
