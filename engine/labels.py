"""Printable Code 128 label sheets (PDF) for tube batches and transport boxes.

A sheet is a grid of equal labels on A4; each label carries the barcode with
its quiet zones, the code in grouped human-readable form and one line saying
what it is for. The same input always gives the same bytes, so a sheet can be
re-rendered and compared. Allocation is left to :mod:`engine.tube_allocation`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from engine.barcodes import (
    BOX_SERIAL_LIMIT,
    BarcodeError,
    make_box_code,
    parse_box_code,
    parse_tube_code,
)
from engine.tube_allocation import TubeBatch

__all__ = [
    "BOX_SHEET",
    "TUBE_SHEET",
    "Cell",
    "Label",
    "SheetLayout",
    "box_labels",
    "group_code",
    "render_box_sheet",
    "render_sheet",
    "render_tube_sheet",
    "tube_labels",
]

QUIET_MODULES = 10
"""Blank modules either side of a barcode (ISO/IEC 15417 asks for 10)."""


@dataclass(frozen=True, slots=True)
class SheetLayout:
    """A grid of equal labels on a page; sizes in millimetres."""

    name: str
    columns: int
    rows: int
    bar_width_mm: float
    """Width of the narrowest bar (one module); 0.25 mm or more scans well."""

    bar_height_mm: float
    code_font_pt: float
    info_font_pt: float
    page_width_mm: float = A4[0] / mm
    page_height_mm: float = A4[1] / mm

    @property
    def per_page(self) -> int:
        """Labels on one full page."""
        return self.columns * self.rows

    @property
    def cell_width_mm(self) -> float:
        """Width of one label."""
        return self.page_width_mm / self.columns

    @property
    def cell_height_mm(self) -> float:
        """Height of one label."""
        return self.page_height_mm / self.rows

    def cell(self, index: int) -> Cell:
        """Where the ``index``-th label of a sheet sits, row by row."""
        page, position = divmod(index, self.per_page)
        row, column = divmod(position, self.columns)
        return Cell(
            page=page,
            left_mm=column * self.cell_width_mm,
            top_mm=row * self.cell_height_mm,
            width_mm=self.cell_width_mm,
            height_mm=self.cell_height_mm,
        )


@dataclass(frozen=True, slots=True)
class Cell:
    """One label's rectangle, measured from the page's top-left corner."""

    page: int
    left_mm: float
    top_mm: float
    width_mm: float
    height_mm: float


@dataclass(frozen=True, slots=True)
class Label:
    """What one label shows: the barcode's value and a line of context."""

    code: str
    info: str


TUBE_SHEET = SheetLayout(
    name="tube",
    columns=3,
    rows=10,
    bar_width_mm=4 * 25.4 / 300,
    bar_height_mm=14.0,
    code_font_pt=9.0,
    info_font_pt=7.0,
)
"""30 tube labels of 70 x 29.7 mm per A4 page (the common 3 x 10 stock).

A module is 4 dots of a 300 dpi printer (8 at 600 dpi), about 0.34 mm, so
bars land on whole dots of office laser printers and the longest tube code
with its quiet zones (63.3 mm) fits the label.
"""

# TODO: 203 dpi thermal label printers cannot print these modules on whole
# dots (2.67 dots), and sheets are A4 only; roll stock needs its own layout.

BOX_SHEET = SheetLayout(
    name="box",
    columns=2,
    rows=5,
    bar_width_mm=6 * 25.4 / 300,
    bar_height_mm=28.0,
    code_font_pt=14.0,
    info_font_pt=10.0,
)
"""10 box labels of 105 x 59.4 mm per A4 page, readable at arm's length."""


def group_code(code: str) -> str:
    """The code with spaces between its fields, as printed under the bars."""
    cuts: tuple[int, ...]
    if code.startswith("T"):
        cuts = (1, 7, 10, 17)
    elif code.startswith("B"):
        cuts = (1, 7, 12)
    else:
        return code
    bounds = (0, *cuts, len(code))
    return " ".join(code[a:b] for a, b in pairwise(bounds))


def tube_labels(batch: TubeBatch) -> list[Label]:
    """One label per tube of the batch, in serial order."""
    info = f"site {batch.site}  {batch.capacity}-in-1"
    return [Label(code, info) for code in batch.codes()]


def box_labels(district: str, first_serial: int, count: int) -> list[Label]:
    """Labels for boxes ``first_serial`` .. ``first_serial + count - 1``.

    Raises:
        BarcodeError: the district is not 6 digits, the count is not positive
            or the range runs past the last box serial.
    """
    if count < 1:
        raise BarcodeError(f"box count must be at least 1, got {count}")
    last = first_serial + count - 1
    if first_serial < 0 or last >= BOX_SERIAL_LIMIT:
        raise BarcodeError(
            f"box serials {first_serial}..{last} run outside 0..{BOX_SERIAL_LIMIT - 1}"
        )
    return [
        Label(make_box_code(district, serial), f"district {district}  box {serial}")
        for serial in range(first_serial, last + 1)
    ]


def render_tube_sheet(batch: TubeBatch) -> bytes:
    """The PDF label sheet of a tube batch."""
    last = batch.first_serial + batch.size - 1
    title = f"Tubes {batch.site} {batch.first_serial}-{last} {batch.capacity}-in-1"
    return render_sheet(tube_labels(batch), TUBE_SHEET, title)


def render_box_sheet(district: str, first_serial: int, count: int) -> bytes:
    """The PDF label sheet of a district's boxes."""
    last = first_serial + count - 1
    title = f"Boxes {district} {first_serial}-{last}"
    return render_sheet(box_labels(district, first_serial, count), BOX_SHEET, title)


def render_sheet(labels: Sequence[Label], layout: SheetLayout, title: str) -> bytes:
    """Lay labels out row by row over as many pages as they need.

    Raises:
        BarcodeError: a label's code is not a valid tube or box barcode (a
            sheet never carries a code scanners would refuse), or there are
            no labels.
    """
    if not labels:
        raise BarcodeError("a label sheet needs at least one label")
    for label in labels:
        _check(label.code)

    buffer = io.BytesIO()
    # invariant: no creation date or random document id, so output is stable.
    canvas = Canvas(
        buffer,
        pagesize=(layout.page_width_mm * mm, layout.page_height_mm * mm),
        invariant=True,
        pageCompression=True,
    )
    canvas.setTitle(title)
    canvas.setCreator("sieve")
    canvas.setAuthor("sieve")
    canvas.setSubject(f"{len(labels)} {layout.name} labels")

    num_pages = math.ceil(len(labels) / layout.per_page)
    for page in range(num_pages):
        start = page * layout.per_page
        for index in range(start, min(start + layout.per_page, len(labels))):
            _draw_label(canvas, layout, layout.cell(index), labels[index])
        canvas.showPage()
    canvas.save()

    return buffer.getvalue()


def _check(code: str) -> None:
    if code.startswith("B"):
        parse_box_code(code)
    else:
        parse_tube_code(code)


def _draw_label(canvas: Canvas, layout: SheetLayout, cell: Cell, label: Label) -> None:
    bar_width = layout.bar_width_mm * mm
    quiet = QUIET_MODULES * bar_width
    barcode = Code128(
        label.code,
        barWidth=bar_width,
        barHeight=layout.bar_height_mm * mm,
        quiet=True,
        lquiet=quiet,
        rquiet=quiet,
        humanReadable=False,
    )
    width = float(barcode.width)
    cell_left = cell.left_mm * mm
    cell_width = cell.width_mm * mm
    if width > cell_width:
        raise BarcodeError(
            f"barcode {label.code} is {width / mm:.1f} mm wide, wider than "
            f"the {cell.width_mm:.1f} mm {layout.name} label"
        )

    # Everything is centred on the label; the block sits in its vertical middle.
    page_height = layout.page_height_mm * mm
    code_gap = 1.2 * mm
    block = (
        layout.bar_height_mm * mm
        + code_gap
        + layout.code_font_pt
        + layout.info_font_pt * 1.3
    )
    top = page_height - cell.top_mm * mm - (cell.height_mm * mm - block) / 2
    centre = cell_left + cell_width / 2

    bar_bottom = top - layout.bar_height_mm * mm
    barcode.drawOn(canvas, centre - width / 2, bar_bottom)

    code_baseline = bar_bottom - code_gap - layout.code_font_pt * 0.8
    canvas.setFont("Courier-Bold", layout.code_font_pt)
    canvas.drawCentredString(centre, code_baseline, group_code(label.code))

    info_baseline = code_baseline - layout.info_font_pt * 1.3
    canvas.setFont("Helvetica", layout.info_font_pt)
    canvas.drawCentredString(centre, info_baseline, label.info)
