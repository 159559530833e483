"""Tube and box barcodes: layout, check character and what parsing refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.barcodes import (
    BOX_CODE_LENGTH,
    BOX_SERIAL_LIMIT,
    TUBE_CODE_LENGTH,
    TUBE_SERIAL_LIMIT,
    BarcodeError,
    BoxCode,
    TubeCode,
    check_character,
    make_box_code,
    make_tube_code,
    parse_box_code,
    parse_tube_code,
)

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

TUBE = make_tube_code("120101-001", 42)
BOX = make_box_code("120101", 17)
WRONG_CHECK = TUBE[:-1] + ("1" if TUBE[-1] == "0" else "0")


@pytest.mark.parametrize(
    ("site", "serial"),
    [
        ("120101-001", 0),
        ("120101-001", 42),
        ("120116-123", TUBE_SERIAL_LIMIT - 1),
        ("999999-999", 1_234_567),
    ],
)
def test_tube_code_round_trips(site: str, serial: int) -> None:
    """A made tube code parses back to its site, district and serial."""
    code = make_tube_code(site, serial)

    assert TUBE_CODE_LENGTH == len(code)
    assert TubeCode(code, site[:6], site, serial) == parse_tube_code(code)


@pytest.mark.parametrize(
    ("district", "serial"), [("120101", 0), ("120116", 17), ("120101", 99_999)]
)
def test_box_code_round_trips(district: str, serial: int) -> None:
    """A made box code parses back to its district and serial."""
    code = make_box_code(district, serial)

    assert BOX_CODE_LENGTH == len(code)
    assert BoxCode(code, district, serial) == parse_box_code(code)


def test_codes_have_the_documented_layout() -> None:
    """Marker, district, site number, zero-padded serial, then the check."""
    assert "T1201010010000042" == TUBE[:-1]
    assert check_character(TUBE[:-1]) == TUBE[-1]
    assert "B12010100017" == BOX[:-1]


def test_scanned_text_is_trimmed_and_case_folded() -> None:
    """Whitespace around a scan and lower case are accepted."""
    assert TUBE == parse_tube_code(f"  {TUBE.lower()}\n").code
    assert BOX == parse_box_code(f"\t{BOX.lower()} ").code


@pytest.mark.parametrize(
    ("code", "parse"), [(TUBE, parse_tube_code), (BOX, parse_box_code)]
)
def test_every_single_character_substitution_is_refused(
    code: str, parse: Callable[[str], object]
) -> None:
    """Replacing any one character by any other letter or digit fails parsing."""
    num_tried = 0
    for position in range(len(code)):
        for char in ALPHABET:
            if char == code[position]:
                continue
            changed = code[:position] + char + code[position + 1 :]
            with pytest.raises(BarcodeError):
                parse(changed)
            num_tried += 1

    assert len(code) * (len(ALPHABET) - 1) == num_tried


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TUBE[:-1], "tube barcode must be 18 characters, got 17"),
        (TUBE + "0", "tube barcode must be 18 characters, got 19"),
        ("", "tube barcode must be 18 characters, got 0"),
        (BOX, "tube barcode must be 18 characters, got 13"),
        ("B" + TUBE[1:], "tube barcode must start with 'T'"),
        (TUBE[:5] + "-" + TUBE[6:], "tube barcode may hold only letters and digits"),
        (TUBE[:5] + "é" + TUBE[6:], "tube barcode may hold only letters and digits"),
        (WRONG_CHECK, "tube barcode check character does not match"),
    ],
)
def test_bad_tube_codes_are_refused_with_the_reason(text: str, message: str) -> None:
    """Wrong length, marker, characters or check each get their own message."""
    with pytest.raises(BarcodeError) as caught:
        parse_tube_code(text)

    assert message in str(caught.value)


def test_letters_where_tube_digits_belong_are_refused() -> None:
    """A letter inside the digit fields is refused even with a matching check."""
    payload = "T12010A0010000042"
    code = payload + check_character(payload)

    with pytest.raises(BarcodeError) as caught:
        parse_tube_code(code)

    assert "T, 16 digits and a check character" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOX[:-1], "box barcode must be 13 characters, got 12"),
        (TUBE, "box barcode must be 13 characters, got 18"),
        ("T" + BOX[1:], "box barcode must start with 'B'"),
        (BOX[:4] + "_" + BOX[5:], "box barcode may hold only letters and digits"),
    ],
)
def test_bad_box_codes_are_refused_with_the_reason(text: str, message: str) -> None:
    """Box codes are refused for the same reasons, named as box barcodes."""
    with pytest.raises(BarcodeError) as caught:
        parse_box_code(text)

    assert message in str(caught.value)


def test_letters_where_box_digits_belong_are_refused() -> None:
    """A letter in the box serial is refused even with a matching check."""
    payload = "B1201010001Z"
    code = payload + check_character(payload)

    with pytest.raises(BarcodeError) as caught:
        parse_box_code(code)

    assert "B, 11 digits and a check character" in str(caught.value)


@pytest.mark.parametrize(
    ("site", "serial", "message"),
    [
        ("120101", 1, "is not <district>-<nnn>"),
        ("120101-01", 1, "is not <district>-<nnn>"),
        ("12010x-001", 1, "is not <district>-<nnn>"),
        ("120101-001", -1, "outside 0..9999999"),
        ("120101-001", TUBE_SERIAL_LIMIT, "outside 0..9999999"),
    ],
)
def test_make_tube_code_refuses_what_cannot_be_encoded(
    site: str, serial: int, message: str
) -> None:
    """Site ids and serials that do not fit the layout are refused."""
    with pytest.raises(BarcodeError) as caught:
        make_tube_code(site, serial)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("district", "serial", "message"),
    [
        ("12010", 1, "is not 6 digits"),
        ("120101", BOX_SERIAL_LIMIT, "outside 0..99999"),
        ("120101", -1, "outside 0..99999"),
    ],
)
def test_make_box_code_refuses_what_cannot_be_encoded(
    district: str, serial: int, message: str
) -> None:
    """Districts and box serials that do not fit the layout are refused."""
    with pytest.raises(BarcodeError) as caught:
        make_box_code(district, serial)

    assert message in str(caught.value)
