"""Discrepancy classification from a district's tube, trip and receipt facts."""

from __future__ import annotations

from engine.barcodes import make_box_code, make_tube_code
from engine.discrepancies import (
    Kind,
    ReceiptFacts,
    TripFacts,
    TubeFacts,
    classify,
)

SITE = "120101-001"
BOX = make_box_code("120101", 1)
OTHER_BOX = make_box_code("120101", 2)


def tube(serial: int) -> str:
    return make_tube_code(SITE, serial)


def done(code: str) -> TubeFacts:
    """A tube whose journey is complete."""
    return TubeFacts(
        code,
        bound=True,
        sealed=True,
        box=BOX,
        box_trip=1,
        received=True,
        received_box=BOX,
        site=SITE,
    )


def receipt(code: str, *ids: str) -> ReceiptFacts:
    return ReceiptFacts(code, frozenset(ids or ("e1",)), tuple(BOX for _ in ids))


def kinds(findings: list) -> list[tuple[Kind, str]]:  # type: ignore[type-arg]
    return [(f.kind, f.tube) for f in findings]


def test_a_complete_journey_has_no_findings() -> None:
    """Sealed, loaded, received once and scanned: nothing to report."""
    code = tube(1)
    trip = TripFacts(BOX, 1, "RECEIVED", SITE, "LAB01", {code: (True, True)})
    findings = classify(
        1,
        "120101",
        [code],
        {code: done(code)},
        [trip],
        {code: receipt(code)},
        lambda _: True,
    )
    assert [] == findings


def test_each_kind_is_told_apart() -> None:
    """One tube per kind; each gets exactly its own finding(s)."""
    sealed_only, in_transit, short, extra_unsealed = tube(1), tube(2), tube(3), tube(4)
    stranger, unbound, twice = tube(9_000_000), tube(6), tube(7)
    tubes = {
        sealed_only: TubeFacts(sealed_only, bound=True, sealed=True, site=SITE),
        in_transit: TubeFacts(
            in_transit, bound=True, sealed=True, box=OTHER_BOX, box_trip=1, site=SITE
        ),
        short: TubeFacts(
            short, bound=True, sealed=True, box=BOX, box_trip=1, site=SITE
        ),
        extra_unsealed: TubeFacts(
            extra_unsealed, bound=True, sealed=False, received=True, site=SITE
        ),
        stranger: TubeFacts(stranger, bound=False, sealed=False, received=True),
        unbound: TubeFacts(unbound, bound=False, sealed=False, received=True),
        twice: done(twice),
    }
    trips = [
        TripFacts(
            BOX,
            1,
            "RECEIVED",
            SITE,
            "LAB01",
            {
                short: (True, False),
                twice: (True, True),
                extra_unsealed: (False, True),
                stranger: (False, True),
                unbound: (False, True),
            },
        ),
        TripFacts(
            OTHER_BOX, 1, "IN_TRANSIT", SITE, "LAB01", {in_transit: (True, False)}
        ),
    ]
    receipts = {
        twice: receipt(twice, "e1", "e2"),
        extra_unsealed: receipt(extra_unsealed),
        stranger: receipt(stranger),
        unbound: receipt(unbound),
    }
    findings = classify(
        1,
        "120101",
        list(tubes),
        tubes,
        trips,
        receipts,
        lambda code: code != stranger,
    )
    assert sorted(
        [
            (Kind.SEALED_NOT_BOXED, sealed_only),
            (Kind.BOXED_NOT_RECEIVED, in_transit),
            (Kind.BOXED_NOT_RECEIVED, short),
            (Kind.BOX_SHORT, short),
            (Kind.RECEIVED_NOT_SEALED, extra_unsealed),
            (Kind.BOX_EXTRA, extra_unsealed),
            (Kind.RECEIVED_UNKNOWN, stranger),
            (Kind.BOX_EXTRA, stranger),
            (Kind.RECEIVED_UNKNOWN, unbound),
            (Kind.BOX_EXTRA, unbound),
            (Kind.RECEIVED_TWICE, twice),
        ]
    ) == sorted(kinds(findings))
    by_kind = {(f.kind, f.tube): f for f in findings}
    assert "never allocated" == by_kind[(Kind.RECEIVED_UNKNOWN, stranger)].detail
    assert "allocated, never bound" == by_kind[(Kind.RECEIVED_UNKNOWN, unbound)].detail
    assert (BOX, 1) == (
        by_kind[(Kind.BOX_SHORT, short)].box,
        by_kind[(Kind.BOX_SHORT, short)].trip,
    )
    assert (
        "trip state IN_TRANSIT" == by_kind[(Kind.BOXED_NOT_RECEIVED, in_transit)].detail
    )


def test_a_short_tube_of_a_trip_not_yet_received_is_only_in_transit() -> None:
    """BOX_SHORT needs the lab to have received the trip."""
    code = tube(1)
    facts = TubeFacts(code, bound=True, sealed=True, box=BOX, box_trip=1, site=SITE)
    trip = TripFacts(BOX, 1, "IN_TRANSIT", SITE, "LAB01", {code: (True, False)})
    findings = classify(1, "120101", [code], {code: facts}, [trip], {}, lambda _: True)
    assert [(Kind.BOXED_NOT_RECEIVED, code)] == kinds(findings)


def test_a_received_tube_without_a_tubes_row_is_unknown() -> None:
    """A receipt for a code the store has no tube row of is still listed."""
    code = tube(5)
    findings = classify(1, "120101", [], {}, [], {code: receipt(code)}, lambda _: True)
    assert [(Kind.RECEIVED_UNKNOWN, code)] == kinds(findings)
    assert SITE == findings[0].site


def test_findings_are_sorted_by_site_then_kind() -> None:
    """Reports read site by site, kinds in their fixed order."""
    a = make_tube_code("120101-002", 1)
    b = tube(2)
    tubes = {
        a: TubeFacts(a, bound=True, sealed=True, site="120101-002"),
        b: TubeFacts(b, bound=True, sealed=False, received=True, site=SITE),
    }
    findings = classify(
        1, "120101", [a, b], tubes, [], {b: receipt(b, "x", "y")}, lambda _: True
    )
    assert [
        (Kind.RECEIVED_NOT_SEALED, b),
        (Kind.RECEIVED_TWICE, b),
        (Kind.SEALED_NOT_BOXED, a),
    ] == kinds(findings)
