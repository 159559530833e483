"""Identity-document number rules: the gateway's validator and `sieve id check`.

A resident identity card number follows GB 11643-1999: six digits of address
code (whose first two name a province-level division), eight of birth date,
three of sequence, and one ISO 7064 MOD 11-2 check character (``0-9`` or
``X``). Residents come from the whole country, so any real province is
accepted, not only the city's own. The other document types are checked by
the shape their issuers print.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

__all__ = [
    "DocumentType",
    "InvalidDocument",
    "check_id_character",
    "normalize_document",
    "validate_resident_id",
]

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARACTERS = "10X98765432"
"""Check character for each value of the weighted sum modulo 11."""

PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",  # Beijing .. Inner Mongolia
        "21", "22", "23",  # Liaoning, Jilin, Heilongjiang
        "31", "32", "33", "34", "35", "36", "37",  # Shanghai .. Shandong
        "41", "42", "43", "44", "45", "46",  # Henan .. Hainan
        "50", "51", "52", "53", "54",  # Chongqing .. Tibet
        "61", "62", "63", "64", "65",  # Shaanxi .. Xinjiang
        "71",  # Taiwan
        "81", "82",  # Hong Kong, Macao residence permits
        "83",  # Taiwan residents' residence permits
    }
)  # fmt: skip

EARLIEST_BIRTH = dt.date(1890, 1, 1)
"""No living resident was born before this."""

_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_HK_MACAO = re.compile(r"^[HM]\d{8}(\d{2})?$")
_TAIWAN = re.compile(r"^\d{8}(\d{2})?$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,17}$")
_FOREIGN_OLD = re.compile(r"^[A-Z]{3}\d{12}$")
_FOREIGN_NEW = re.compile(r"^9\d{16}[\dX]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class DocumentType(enum.IntEnum):
    """Document types; values match ``sieve.v1.DocumentType``."""

    RESIDENT_ID_CARD = 1
    HK_MACAO_PASS = 2
    TAIWAN_PASS = 3
    PASSPORT = 4
    FOREIGN_PERMANENT_RESIDENCE = 5
    OTHER = 6


@dataclass(frozen=True, slots=True)
class InvalidDocument(Exception):
    """A document number breaks its type's rule.

    Attributes:
        rule: short machine name of the broken rule (``check_character``).
        detail: what was wrong, for a person; never the full number.
    """

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.detail} (rule={self.rule})"


def check_id_character(first17: str) -> str:
    """Return the ISO 7064 MOD 11-2 check character for 17 leading digits."""
    total = sum(
        int(digit) * weight for digit, weight in zip(first17, ID_WEIGHTS, strict=True)
    )
    return ID_CHECK_CHARACTERS[total % 11]


def validate_resident_id(raw: str, today: dt.date) -> str:
    """Check a resident identity card number and return it normalised.

    Args:
        raw: the number as captured; surrounding spaces and a lowercase ``x``
            are normalised.
        today: the date births may not be after.

    Returns:
        The 18-character number with an upper-case check character.

    Raises:
        InvalidDocument: the length, characters, province, birth date or check
            character is wrong.
    """
    number = raw.strip().upper()
    if len(number) != 18:
        raise InvalidDocument("length", f"must be 18 characters, got {len(number)}")
    if not _ID_SHAPE.match(number):
        raise InvalidDocument("characters", "must be 17 digits then a digit or X")

    province = number[:2]
    if province not in PROVINCE_CODES:
        raise InvalidDocument("province", f"no province has code {province}")

    birth_text = number[6:14]
    try:
        birth = dt.date(int(birth_text[:4]), int(birth_text[4:6]), int(birth_text[6:]))
    except ValueError:
        raise InvalidDocument(
            "birth_date", f"birth date {birth_text} is not a real date"
        ) from None
    if birth > today:
        raise InvalidDocument("birth_date", f"birth date {birth_text} is in the future")
    if birth < EARLIEST_BIRTH:
        raise InvalidDocument("birth_date", f"birth date {birth_text} is too early")

    expected = check_id_character(number[:17])
    if number[17] != expected:
        raise InvalidDocument(
            "check_character", "check character does not match the other 17"
        )
    return number


def normalize_document(doc_type: DocumentType, raw: str, today: dt.date) -> str:
    """Check a document number of any type and return it normalised.

    Args:
        doc_type: the type the collector selected.
        raw: the number as captured.
        today: reference date for birth-date rules.

    Returns:
        The number, upper-cased and stripped.

    Raises:
        InvalidDocument: the number breaks its type's rule.
    """
    if doc_type is DocumentType.RESIDENT_ID_CARD:
        return validate_resident_id(raw, today)
    number = raw.strip().upper()
    if doc_type is DocumentType.HK_MACAO_PASS:
        _expect(_HK_MACAO, number, "H or M then 8 (or 10) digits")
    elif doc_type is DocumentType.TAIWAN_PASS:
        _expect(_TAIWAN, number, "8 (or 10) digits")
    elif doc_type is DocumentType.PASSPORT:
        _expect(_PASSPORT, number, "5 to 17 letters or digits")
    elif doc_type is DocumentType.FOREIGN_PERMANENT_RESIDENCE:
        _check_foreign_card(number)
    else:
        _check_other(raw.strip())
        return raw.strip()
    return number


def _expect(pattern: re.Pattern[str], number: str, shape: str) -> None:
    if not pattern.match(number):
        raise InvalidDocument("format", f"must be {shape}")


def _check_foreign_card(number: str) -> None:
    # The 2017 card has 3 letters of nationality and 12 digits; the 2023 card
    # has 18 characters starting with 9 and the same check character as the
    # resident card.
    if _FOREIGN_OLD.match(number):
        return
    if not _FOREIGN_NEW.match(number):
        raise InvalidDocument(
            "format", "must be 3 letters and 12 digits, or 18 characters from 9"
        )
    if number[17] != check_id_character(number[:17]):
        raise InvalidDocument(
            "check_character", "check character does not match the other 17"
        )


def _check_other(number: str) -> None:
    if not 1 <= len(number) <= 32:
        raise InvalidDocument(
            "length", f"must be 1 to 32 characters, got {len(number)}"
        )
    if _CONTROL.search(number):
        raise InvalidDocument("characters", "must not contain control characters")
