"""Tube and box barcodes: their layout, check character and parsing.

A tube code names the site it was printed for and a serial::

    T 120101 001 0000042 V
    | |      |   |       check character (Luhn mod 36 over what precedes it)
    | |      |   serial within the site, 7 digits
    | |      site number within the district (the part after ``-`` in its id)
    | district code
    tube marker

A box code names the district whose transporters own the box::

    B 120101 00017 4

Both are upper-case letters and digits only, so Code 128 prints them compactly
and a scanner's misread of any single character fails the check.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BOX_CODE_LENGTH",
    "TUBE_CODE_LENGTH",
    "BarcodeError",
    "BoxCode",
    "TubeCode",
    "check_character",
    "make_box_code",
    "make_tube_code",
    "parse_box_code",
    "parse_tube_code",
]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = {char: index for index, char in enumerate(_ALPHABET)}

TUBE_CODE_LENGTH = 18
BOX_CODE_LENGTH = 13
TUBE_SERIAL_LIMIT = 10_000_000
BOX_SERIAL_LIMIT = 100_000


class BarcodeError(ValueError):
    """A code that is not a well-formed tube or box barcode; the message says why."""


class TubeCode(NamedTuple):
    """The parts of a valid tube barcode."""

    code: str
    district: str
    site: str
    """The site id, ``<district>-<nnn>``."""
    serial: int


class BoxCode(NamedTuple):
    """The parts of a valid box barcode."""

    code: str
    district: str
    serial: int


def check_character(payload: str) -> str:
    """Luhn mod 36 check character for an upper-case alphanumeric payload.

    It catches every single-character substitution and every transposition of
    two adjacent characters except between characters whose values sum to 35
    when doubled differently; that is the property scanners need.
    """
    factor = 2
    total = 0
    for char in reversed(payload):
        addend = factor * _VALUE[char]
        total += addend // 36 + addend % 36
        factor = 1 if factor == 2 else 2
    return _ALPHABET[(36 - total % 36) % 36]


def make_tube_code(site_id: str, serial: int) -> str:
    """The barcode of a site's ``serial``-th tube.

    Raises:
        BarcodeError: the site id is not ``<6-digit district>-<3 digits>`` or
            the serial is out of range.
    """
    district, sep, number = site_id.partition("-")
    if not (sep and _digits(district, 6) and _digits(number, 3)):
        raise BarcodeError(f"site id {site_id!r} is not <district>-<nnn>")
    if not 0 <= serial < TUBE_SERIAL_LIMIT:
        raise BarcodeError(
            f"tube serial {serial} is outside 0..{TUBE_SERIAL_LIMIT - 1}"
        )
    payload = f"T{district}{number}{serial:07d}"
    return payload + check_character(payload)


def make_box_code(district: str, serial: int) -> str:
    """The barcode of a district's ``serial``-th transport box."""
    if not _digits(district, 6):
        raise BarcodeError(f"district {district!r} is not 6 digits")
    if not 0 <= serial < BOX_SERIAL_LIMIT:
        raise BarcodeError(f"box serial {serial} is outside 0..{BOX_SERIAL_LIMIT - 1}")
    payload = f"B{district}{serial:05d}"
    return payload + check_character(payload)


def parse_tube_code(text: str) -> TubeCode:
    """Check and split a scanned tube barcode (spaces trimmed, case folded).

    Raises:
        BarcodeError: wrong length, marker, characters or check character.
    """
    code = _normalise(text, "T", TUBE_CODE_LENGTH, "tube")
    district, number, serial = code[1:7], code[7:10], code[10:17]
    if not (_digits(district, 6) and _digits(number, 3) and _digits(serial, 7)):
        raise BarcodeError("tube barcode must be T, 16 digits and a check character")
    return TubeCode(code, district, f"{district}-{number}", int(serial))


def parse_box_code(text: str) -> BoxCode:
    """Check and split a scanned box barcode.

    Raises:
        BarcodeError: wrong length, marker, characters or check character.
    """
    code = _normalise(text, "B", BOX_CODE_LENGTH, "box")
    district, serial = code[1:7], code[7:12]
    if not (_digits(district, 6) and _digits(serial, 5)):
        raise BarcodeError("box barcode must be B, 11 digits and a check character")
    return BoxCode(code, district, int(serial))


def _normalise(text: str, marker: str, length: int, kind: str) -> str:
    code = text.strip().upper()
    if len(code) != length:
        raise BarcodeError(
            f"{kind} barcode must be {length} characters, got {len(code)}"
        )
    if code[0] != marker:
        raise BarcodeError(f"{kind} barcode must start with {marker!r}")
    if any(char not in _VALUE for char in code):
        raise BarcodeError(f"{kind} barcode may hold only letters and digits")
    if check_character(code[:-1]) != code[-1]:
        raise BarcodeError(f"{kind} barcode check character does not match")
    return code


def _digits(text: str, length: int) -> bool:
    return len(text) == length and text.isascii() and text.isdigit()
