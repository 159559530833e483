"""Correction request rules: phone numbers, document checks, ID variants."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.auth import make_device_token
from engine.corrections import normalize_phone
from engine.corrections_candidates import edit_distance, id_variants
from engine.documents import DocumentType, check_id_character, validate_resident_id
from engine.exceptions import AuthenticationError
from engine.lookup import RequestInvalid, parse_document
from engine.lookup_clients import LookupClientAuthenticator, make_client_token

TODAY = dt.date(2024, 6, 1)
KEY = b"k" * 32


def _valid(first17: str) -> str:
    return first17 + check_id_character(first17)


TRUE_ID = _valid("12010119900307001")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("022-2345-6789", "02223456789"),
    ],
)
def test_phone_numbers_are_normalised(raw: str, expected: str) -> None:
    """Mobile and landline numbers come back as digits only."""
    assert expected == normalize_phone(raw)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("", "required"),
        ("   ", "required"),
        ("12345", "format"),
        ("2381234567", "format"),
    ],
)
def test_bad_phone_numbers_are_refused(raw: str, rule: str) -> None:
    """An empty or malformed phone is refused, naming the field and rule."""
    with pytest.raises(RequestInvalid) as caught:
        normalize_phone(raw)

    assert "phone" == caught.value.field
    assert rule == caught.value.rule


def test_document_is_checked_and_normalised() -> None:
    """A lowercase x is normalised; the type comes back as a number."""
    number = _valid("11010519491231002")
    lowered = number.lower()

    assert (1, number) == parse_document(1, lowered, TODAY)


@pytest.mark.parametrize(
    ("doc_type", "raw", "field", "rule"),
    [
        (0, TRUE_ID, "document_type", "enum"),
        (1, "", "document_number", "required"),
        (1, TRUE_ID[:17] + "9", "document_number", "check_character"),
        (1, "1201011990030700", "document_number", "length"),
    ],
)
def test_malformed_documents_are_refused(
    doc_type: int, raw: str, field: str, rule: str
) -> None:
    """Unknown types and numbers breaking their rule name what is wrong."""
    with pytest.raises(RequestInvalid) as caught:
        parse_document(doc_type, raw, TODAY)

    assert (field, rule) == (caught.value.field, caught.value.rule)
    assert raw[:17] not in caught.value.message or not raw


def test_no_single_edit_of_a_resident_id_is_valid() -> None:
    """The check character catches every single substitution and swap."""
    variants = id_variants(int(DocumentType.RESIDENT_ID_CARD), TRUE_ID, TODAY)

    assert variants
    assert set(variants.values()) == {2}


def test_a_misread_digit_with_its_check_character_is_a_variant() -> None:
    """One body digit misread, check character recomputed: two edits, found."""
    misread = _valid(TRUE_ID[:14] + "9" + TRUE_ID[15:17])

    variants = id_variants(int(DocumentType.RESIDENT_ID_CARD), TRUE_ID, TODAY)

    assert 2 == variants[misread]
    for number in list(variants)[:50]:
        assert number == validate_resident_id(number, TODAY)


def test_passports_get_single_edits_only() -> None:
    """Types without a check character stop at one edit."""
    variants = id_variants(int(DocumentType.PASSPORT), "E12345678", TODAY)

    assert "E12345679" in variants
    assert set(variants.values()) == {1}
    assert {} == id_variants(int(DocumentType.OTHER), "anything", TODAY)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("abc", "abc", 0), ("abc", "abd", 1), ("abcd", "abdc", 1), ("abc", "ab", 1),
     ("1234", "2143", 2)],
)  # fmt: skip
def test_edit_distance_counts_adjacent_swaps_as_one(
    a: str, b: str, distance: int
) -> None:
    """Optimal string alignment distance."""
    assert distance == edit_distance(a, b)


def test_client_tokens_are_checked() -> None:
    """A listed client with its token passes; others are refused."""
    auth = LookupClientAuthenticator(KEY, ["resident-app"])
    token = make_client_token(KEY, "resident-app")

    assert "resident-app" == auth.authenticate("resident-app", token)
    with pytest.raises(AuthenticationError):
        auth.authenticate("resident-app", token[:-1] + "A")
    with pytest.raises(AuthenticationError):
        auth.authenticate("other", make_client_token(KEY, "other"))


def test_a_device_token_is_not_a_client_token() -> None:
    """Same key, different message: a device cannot call as a client."""
    auth = LookupClientAuthenticator(KEY, ["120101-001-D0001"])

    with pytest.raises(AuthenticationError):
        auth.authenticate(
            "120101-001-D0001", make_device_token(KEY, "120101-001-D0001")
        )
