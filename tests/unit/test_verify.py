"""Unit tests for perf.verify.classify: row counts read against acks."""

from __future__ import annotations

from collections import Counter

import numpy as np

from perf.verify import TABLES, classify


def _counts(**per_id: list[int]) -> dict[str, Counter[bytes]]:
    counts: dict[str, Counter[bytes]] = {table: Counter() for table in TABLES}
    for key, per_table in per_id.items():
        for table, n in zip(TABLES, per_table, strict=True):
            if n:
                counts[table][key.encode().ljust(16, b"_")] = n
    return counts


def _id(name: str) -> bytes:
    return name.encode().ljust(16, b"_")


def test_a_stored_id_with_every_row_once_is_stored_once() -> None:
    """One row in each of the five tables is the healthy case."""
    check = classify([_id("a")], np.array([1]), _counts(a=[1, 1, 1, 1, 1]))
    assert (1, 1, 0, 0) == (
        check.stored_once,
        check.acked_stored,
        check.lost,
        check.duplicated,
    )


def test_an_acked_id_missing_an_index_row_is_lost() -> None:
    """STORED promised every row; one table without it counts as lost."""
    check = classify([_id("a")], np.array([1]), _counts(a=[1, 1, 0, 1, 1]))
    assert 1 == check.lost
    assert 0 == check.stored_once


def test_two_rows_in_one_table_are_duplicated() -> None:
    """A second index row for the same id (say another minute) is a duplicate."""
    check = classify([_id("a")], np.array([2]), _counts(a=[1, 1, 1, 1, 2]))
    assert 1 == check.duplicated
    assert 0 == check.lost


def test_unacked_and_rejected_are_told_apart() -> None:
    """No final ack is unacked (stored or not); REJECTED with rows is flagged."""
    check = classify(
        [_id("u"), _id("v"), _id("r")],
        np.array([0, 0, 3]),
        _counts(u=[1, 1, 1, 1, 1], v=[0, 0, 0, 0, 0], r=[1, 0, 0, 0, 0]),
    )
    assert 2 == check.unacked
    assert 1 == check.unacked_stored
    assert 1 == check.rejected_stored


def test_rows_of_ids_never_sent_are_stray() -> None:
    """Rows for an id the load never sent are counted as stray."""
    check = classify([_id("a")], np.array([1]), _counts(a=[1] * 5, z=[1, 1, 0, 0, 0]))
    assert 2 == check.stray_rows
    assert 4 == check.rows["registrations"] + check.rows["registrations_by_person"]
