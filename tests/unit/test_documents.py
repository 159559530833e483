"""Identity-document rules of the gateway's validator."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.documents import (
    DocumentType,
    InvalidDocument,
    check_id_character,
    normalize_document,
    validate_resident_id,
)

TODAY = dt.date(2026, 12, 3)


def test_published_example_is_valid() -> None:
    """The standard's published example 11010519491231002X passes."""
    assert validate_resident_id("11010519491231002X", TODAY) == "11010519491231002X"


def test_lowercase_check_character_is_normalised() -> None:
    """A lowercase x is accepted and returned upper-case."""
    assert validate_resident_id(" 11010519491231002x ", TODAY) == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "rule"),
    [
        ("110105194912310021", "check_character"),
        ("11010519491331002X", "birth_date"),  # month 13
        ("11010519490230002X", "birth_date"),  # 30 February
        ("11010530001231002X", "birth_date"),  # in the future
        ("99010519491231002X", "province"),
        ("00010519491231002X", "province"),
        ("1101051949123100", "length"),
        ("1101051949123100211", "length"),
        ("11010519491231002Y", "characters"),
        ("1101051949A231002X", "characters"),
    ],
)
def test_bad_resident_ids_name_the_broken_rule(number: str, rule: str) -> None:
    """Each kind of bad ID is refused with the rule it breaks."""
    with pytest.raises(InvalidDocument) as caught:
        validate_resident_id(number, TODAY)
    assert rule == caught.value.rule


def test_birth_today_is_accepted_and_tomorrow_is_not() -> None:
    """A baby registered on its birthday is valid; a birth tomorrow is not."""
    today = f"120101{TODAY:%Y%m%d}001"
    assert validate_resident_id(today + check_id_character(today), TODAY)
    tomorrow = f"120101{TODAY + dt.timedelta(days=1):%Y%m%d}001"
    with pytest.raises(InvalidDocument):
        validate_resident_id(tomorrow + check_id_character(tomorrow), TODAY)


def test_ids_from_other_provinces_are_accepted() -> None:
    """Residents from anywhere in the country are valid in any city."""
    for region in ("440305", "650102", "810000", "830000"):
        first17 = f"{region}19800101123"
        number = first17 + check_id_character(first17)
        assert number == validate_resident_id(number, TODAY)


@pytest.mark.parametrize(
    ("doc_type", "good", "bad"),
    [
        (DocumentType.HK_MACAO_PASS, "H12345678", "X12345678"),
        (DocumentType.HK_MACAO_PASS, "m1234567801", "H1234"),
        (DocumentType.TAIWAN_PASS, "12345678", "1234567"),
        (DocumentType.PASSPORT, "E12345678", "E12"),
        (DocumentType.FOREIGN_PERMANENT_RESIDENCE, "USA110012345678", "US110012345678"),
        (DocumentType.OTHER, "A-1/2", "bad\x00id"),
    ],
)
def test_other_document_types_follow_their_format(
    doc_type: DocumentType, good: str, bad: str
) -> None:
    """Non-ID documents are checked by their own shape."""
    assert normalize_document(doc_type, good, TODAY)
    with pytest.raises(InvalidDocument):
        normalize_document(doc_type, bad, TODAY)


def test_new_foreign_card_uses_the_check_character() -> None:
    """The 2023 permanent residence card starts with 9 and has a check character."""
    first17 = "93310019900101001"
    good = first17 + check_id_character(first17)
    assert good == normalize_document(
        DocumentType.FOREIGN_PERMANENT_RESIDENCE, good, TODAY
    )
    wrong = first17 + ("0" if good[-1] != "0" else "1")
    with pytest.raises(InvalidDocument) as caught:
        normalize_document(DocumentType.FOREIGN_PERMANENT_RESIDENCE, wrong, TODAY)
    assert "check_character" == caught.value.rule
