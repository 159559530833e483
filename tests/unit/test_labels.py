"""Label sheets: rendered to PDF, rasterised, and every barcode decoded back."""

from __future__ import annotations

import pypdfium2
import pytest
import zxingcpp
from PIL import Image

from engine.barcodes import BarcodeError, make_box_code
from engine.labels import (
    BOX_SHEET,
    TUBE_SHEET,
    Label,
    SheetLayout,
    group_code,
    render_box_sheet,
    render_sheet,
    render_tube_sheet,
)
from engine.tube_allocation import TubeBatch

CODE128 = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.Code128)
DPI = 300
"""The office laser printers' resolution the tube sheet is laid out for."""


def _batch(first_serial: int, size: int, capacity: int = 10) -> TubeBatch:
    return TubeBatch("120101-001", first_serial, size, capacity, "test", 0)


def _pages(pdf: bytes, dpi: int = DPI) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [
            page.render(scale=dpi / 72, grayscale=True).to_pil() for page in document
        ]
    finally:
        document.close()


def _decode_cells(
    pdf: bytes, layout: SheetLayout, count: int, dpi: int = DPI
) -> list[str]:
    """Decode each label's own rectangle, so a code in the wrong cell fails."""
    pages = _pages(pdf, dpi)
    px_per_mm = dpi / 25.4
    decoded: list[str] = []
    for index in range(count):
        cell = layout.cell(index)
        box = (
            round(cell.left_mm * px_per_mm),
            round(cell.top_mm * px_per_mm),
            round((cell.left_mm + cell.width_mm) * px_per_mm),
            round((cell.top_mm + cell.height_mm) * px_per_mm),
        )
        found = zxingcpp.read_barcodes(pages[cell.page].crop(box), formats=CODE128)
        decoded.append(",".join(result.text for result in found))
    return decoded


def _page_text(pdf: bytes, page_index: int) -> str:
    document = pypdfium2.PdfDocument(pdf)
    try:
        text_page = document[page_index].get_textpage()
        return str(text_page.get_text_range())
    finally:
        document.close()


@pytest.mark.parametrize(
    ("first_serial", "size"),
    [(0, 1), (42, 30), (9_999_960, 37)],
    ids=["one-label", "one-full-page", "page-and-a-bit"],
)
def test_every_tube_label_decodes_to_its_batch_code(
    first_serial: int, size: int
) -> None:
    """Each label's barcode, read by a real decoder, is the batch's code."""
    batch = _batch(first_serial, size)

    pdf = render_tube_sheet(batch)

    assert -(-size // TUBE_SHEET.per_page) == len(_pages(pdf))
    assert batch.codes() == _decode_cells(pdf, TUBE_SHEET, size)


def test_labels_decode_at_600_dpi_too() -> None:
    """The sheet also scans when printed at 600 dpi (8 dots per module)."""
    batch = _batch(3_000, 31)

    assert batch.codes() == _decode_cells(
        render_tube_sheet(batch), TUBE_SHEET, 31, dpi=600
    )


def test_the_whole_page_scans_to_exactly_the_batch() -> None:
    """Scanning a full page finds each code once and nothing else."""
    batch = _batch(100, TUBE_SHEET.per_page)

    found = zxingcpp.read_barcodes(_pages(render_tube_sheet(batch))[0], formats=CODE128)

    assert sorted(batch.codes()) == sorted(result.text for result in found)


def test_tube_labels_print_the_code_site_and_capacity() -> None:
    """The human-readable code, the site and "20-in-1" are on the label."""
    batch = _batch(7, 2, capacity=20)

    text = _page_text(render_tube_sheet(batch), 0)

    assert group_code(batch.codes()[0]) in text
    assert group_code(batch.codes()[1]) in text
    assert "site 120101-001" in text
    assert "20-in-1" in text


def test_box_labels_decode_to_the_district_box_codes() -> None:
    """Box labels carry the district's fixed box codes, in order."""
    pdf = render_box_sheet("120101", 17, 12)

    expected = [make_box_code("120101", serial) for serial in range(17, 29)]
    assert 2 == len(_pages(pdf))
    assert expected == _decode_cells(pdf, BOX_SHEET, 12)
    assert "district 120101 box 17" in _page_text(pdf, 0)


def test_the_same_batch_renders_to_the_same_bytes() -> None:
    """Output is deterministic: no timestamps or random ids in the PDF."""
    assert render_tube_sheet(_batch(5, 40)) == render_tube_sheet(_batch(5, 40))
    assert render_box_sheet("120102", 0, 3) == render_box_sheet("120102", 0, 3)


def test_a_different_batch_renders_differently() -> None:
    """The bytes depend on the codes, so comparing sheets means something."""
    assert render_tube_sheet(_batch(5, 40)) != render_tube_sheet(_batch(6, 40))


def test_group_code_splits_the_fields() -> None:
    """Tube and box codes are printed in their documented groups."""
    assert "T 120101 001 0000042 V" == group_code("T1201010010000042V")
    assert "B 120101 00017 4" == group_code("B120101000174")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "at least one label"),
        ([Label("T1201010010000042W", "")], "check character does not match"),
        ([Label("HELLO", "")], "must be 18 characters"),
    ],
)
def test_a_sheet_refuses_codes_scanners_would_refuse(
    labels: list[Label], message: str
) -> None:
    """No sheet is rendered for an empty list or a code that does not parse."""
    with pytest.raises(BarcodeError) as caught:
        render_sheet(labels, TUBE_SHEET, "bad")

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("first_serial", "count", "message"),
    [
        (0, 0, "box count must be at least 1"),
        (99_990, 11, "run outside 0..99999"),
        (-1, 2, "run outside 0..99999"),
    ],
)
def test_box_ranges_outside_the_code_space_are_refused(
    first_serial: int, count: int, message: str
) -> None:
    """Box ranges that would need an unencodable serial are refused whole."""
    with pytest.raises(BarcodeError) as caught:
        render_box_sheet("120101", first_serial, count)

    assert message in str(caught.value)


def test_a_barcode_too_wide_for_its_label_is_refused() -> None:
    """Bars that would be cut off at the label's edge stop the render."""
    narrow = SheetLayout(
        name="narrow",
        columns=5,
        rows=10,
        bar_width_mm=0.33,
        bar_height_mm=10.0,
        code_font_pt=8.0,
        info_font_pt=6.0,
    )

    with pytest.raises(BarcodeError) as caught:
        render_sheet([Label("T1201010010000042V", "")], narrow, "narrow")

    assert "wider than the 42.0 mm narrow label" in str(caught.value)
