"""Registry rows, the resident index, participation sets and comparisons."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
from pyroaring import BitMap

from engine.participation_state import Participation
from engine.registry_import import check_row
from engine.registry_index import RegistryIndex, prefix_to_signed, signed_to_prefix
from engine.rounds import compare_registry, compare_rounds, merge_rounds
from perf.registry_gen import RegistryGenerator, write_csv

TODAY = dt.date(2026, 1, 1)
DISTRICTS = ("120101", "120102")
GOOD = ["11010519491231002X", "张伟", "13800138000", "和平路1号", "120101"]


def _hash(n: int) -> bytes:
    return n.to_bytes(8, "big") + b"\x00" * 8


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({0: "110105194912310021"}, "check character"),
        ({0: "1101051949"}, "18 characters"),
        ({1: "张3"}, "name"),
        ({2: "call me"}, "phone"),
        ({3: "  "}, "address is empty"),
        ({4: "999999"}, "not a district"),
    ],
)
def test_bad_rows_name_their_field(change: dict[int, str], reason: str) -> None:
    """Each broken field is refused with a reason that names it."""
    row = list(GOOD)
    for position, value in change.items():
        row[position] = value

    result = check_row(row, DISTRICTS, TODAY)

    assert isinstance(result, str)
    assert reason in result


def test_good_row_is_normalised() -> None:
    """A lowercase x and stray spaces are normalised; an empty phone is kept."""
    row = ["11010519491231002x", " 张伟 ", "", " 和平路  1号 ", "120101"]

    result = check_row(row, DISTRICTS, TODAY)

    assert not isinstance(result, str)
    assert "11010519491231002X" == result.id_number
    fields = (result.name, result.phone, result.address)
    assert ("张伟", "", "和平路 1号") == fields


def test_short_row_is_refused() -> None:
    """A row with a missing column says how many fields it has."""
    assert "has 4 fields" in str(check_row(GOOD[:4], DISTRICTS, TODAY))


def test_generated_registry_rows_all_pass_the_import_checks() -> None:
    """Generated residents are unique and valid for the importer."""
    generator = RegistryGenerator([("120101", 1), ("120102", 3)], seed=3)
    rows = list(generator.rows(2000))
    buffer = io.StringIO()

    written = write_csv(buffer, iter(rows))

    assert 2000 == written
    assert 2000 == len({r.id_number for r in rows})
    assert all(not isinstance(check_row(list(r), DISTRICTS, TODAY), str) for r in rows)


def test_index_locates_and_counts_by_district() -> None:
    """Positions follow prefix order; unknown prefixes come back unfound."""
    index = RegistryIndex.build(
        1, np.array([30, 10, 20], np.uint64), ["120102", "120101", "120102"]
    )

    found, missing = index.locate(np.array([20, 99, 10], np.uint64))

    assert [1, 0] == found.tolist()
    assert [99] == missing.tolist()
    assert {"120101": 1, "120102": 2} == index.population()
    assert BitMap([1, 2]) == index.residents_of("120102")
    assert "120101" == index.district_of(0)


def test_index_survives_its_chunks() -> None:
    """Stored chunks rebuild the same index."""
    prefixes = np.arange(300_000, dtype=np.uint64) * 7919
    index = RegistryIndex.build(2, prefixes, ["120101"] * prefixes.size)

    chunks = [(p, c) for _, p, c in index.chunks()]
    back = RegistryIndex.from_chunks(2, index.districts, chunks)

    assert 3 == len(chunks)
    assert np.array_equal(index.prefixes, back.prefixes)
    assert np.array_equal(index.codes, back.codes)


def test_signed_prefix_round_trips() -> None:
    """CQL bigints carry the full uint64 range."""
    for value in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1):
        assert value == signed_to_prefix(prefix_to_signed(value))


def test_participation_rebases_to_a_grown_registry() -> None:
    """Residents keep their identity and visitors who joined move to positions."""
    old = RegistryIndex.build(1, np.array([10, 30], np.uint64), ["120101"] * 2)
    new = old.merged(RegistryIndex.build(0, np.array([20], np.uint64), ["120102"]), 2)
    part = Participation(1)
    part.add(old, [_hash(30), _hash(20), _hash(5)])

    moved = part.rebased(old, new)

    assert BitMap([1]) == part.residents and 2 == len(part.visitors)
    assert BitMap([1, 2]) == moved.residents
    assert {_hash(5)} == moved.visitors
    assert [10, 20, 30] == new.prefixes.tolist()


def test_participation_blobs_round_trip() -> None:
    """The stored form holds the same people."""
    part = Participation(4, BitMap(range(0, 100_000, 3)), {_hash(1), _hash(2)})

    back = Participation.from_blobs(4, *part.to_blobs())

    assert part == back


def test_compare_rounds_missed_and_new_per_district() -> None:
    """Missed: in M's district, nowhere in N. New: in N's district, in no M.

    Someone sampled in another district of N is not missed.
    """
    then = {
        "A": Participation(1, BitMap([1, 2, 3]), {_hash(7)}),
        "B": Participation(1, BitMap([4, 5])),
    }
    now = {
        "A": Participation(1, BitMap([1, 6]), {_hash(8)}),
        "B": Participation(1, BitMap([2, 5])),
    }

    diffs = compare_rounds(now, then)

    assert BitMap([3]) == diffs["A"].missed and {_hash(7)} == diffs["A"].missed_visitors
    assert BitMap([6]) == diffs["A"].new and {_hash(8)} == diffs["A"].new_visitors
    assert BitMap([4]) == diffs["B"].missed and BitMap() == diffs["B"].new
    assert 2 == diffs["A"].num_missed


def test_compare_with_registry_and_merged_rounds() -> None:
    """Against the registry: its residents not sampled; new are the visitors."""
    index = RegistryIndex.build(
        1, np.arange(6, dtype=np.uint64), ["A", "A", "A", "B", "B", "B"]
    )
    first = {"A": Participation(1, BitMap([0]))}
    second = {"B": Participation(1, BitMap([1, 3]), {_hash(9)})}

    merged = merge_rounds([first, second])
    diffs = compare_registry(second, index)

    assert BitMap([0]) == merged["A"].residents
    assert BitMap([0, 2]) == diffs["A"].missed
    assert BitMap([4, 5]) == diffs["B"].missed
    assert {_hash(9)} == diffs["B"].new_visitors
