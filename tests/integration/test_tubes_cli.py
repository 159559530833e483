"""`sieve tubes` against the real store: allocation, label sheets, refusals."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pypdfium2
import pytest
import zxingcpp
from click.testing import CliRunner, Result

from engine.barcodes import make_box_code, make_tube_code
from engine.cli import main
from engine.config import Settings
from engine.store import CqlStore
from engine.tube_allocation import TubeAllocator, TubeBatch

pytestmark = pytest.mark.integration

CODE128 = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.Code128)
ALLOCATED = re.compile(r"allocated (\S+) serials (\d+)\.\.(\d+) \((\d+) tubes")


def _sieve(settings: Settings, *args: str) -> Result:
    env = {"SIEVE_CQL_KEYSPACE": settings.cql_keyspace}
    return CliRunner().invoke(main, ["tubes", *args], env=env)


def _print(settings: Settings, site: str, count: int, out: Path, *extra: str) -> Result:
    return _sieve(
        settings,
        "print",
        "--site",
        site,
        "--count",
        str(count),
        "--out",
        str(out),
        *extra,
    )


def _range(result: Result) -> range:
    match = ALLOCATED.search(result.output)
    assert match is not None, result.output
    first, last = int(match[2]), int(match[3])
    return range(first, last + 1)


def _scan(pdf: Path) -> list[str]:
    """Every Code 128 a real decoder finds on the sheet, page by page."""
    document = pypdfium2.PdfDocument(pdf.read_bytes())
    try:
        codes: list[str] = []
        for page in document:
            image = page.render(scale=300 / 72, grayscale=True).to_pil()
            codes += [r.text for r in zxingcpp.read_barcodes(image, formats=CODE128)]
        return codes
    finally:
        document.close()


def _sequence(store: CqlStore, site: str) -> int | None:
    rows = store.execute_sync(
        "SELECT next_serial FROM {ks}.tube_sequences WHERE site = %s", (site,)
    )
    return int(rows[0].next_serial) if rows else None


def test_print_allocates_and_writes_a_sheet_that_scans(
    settings: Settings, store: CqlStore, tmp_path: Path
) -> None:
    """The sheet holds exactly the allocated serials' codes, and says the range."""
    out = tmp_path / "tubes.pdf"

    result = _print(settings, "120101-001", 35, out, "--capacity", "20")

    assert 0 == result.exit_code, result.output
    serials = _range(result)
    assert 35 == len(serials)
    expected = [make_tube_code("120101-001", serial) for serial in serials]
    assert sorted(expected) == sorted(_scan(out))
    batch = TubeAllocator(store).batches("120101-001").find(serials[0])
    assert batch is not None
    assert (serials[0], 35, 20) == (batch.first_serial, batch.size, batch.capacity)


def test_two_allocations_for_one_site_do_not_overlap(
    settings: Settings, store: CqlStore, tmp_path: Path
) -> None:
    """A second print continues where the first stopped; batches find each serial."""
    first = _print(settings, "120102-001", 12, tmp_path / "a.pdf", "--printer", "p1")
    second = _print(settings, "120102-001", 7, tmp_path / "b.pdf", "--printer", "p2")

    assert (0, 0) == (first.exit_code, second.exit_code), first.output + second.output
    a, b = _range(first), _range(second)
    assert set() == set(a) & set(b)
    assert a.stop == b.start

    batches = TubeAllocator(store).batches("120102-001")
    assert 2 == len(batches)
    for serials, printer in ((a, "p1"), (b, "p2")):
        for serial in serials:
            found = batches.find(serial)
            assert found is not None
            assert (serials.start, len(serials), printer) == (
                found.first_serial,
                found.size,
                found.printer,
            )
    assert None is batches.find(b.stop)


def test_concurrent_allocations_never_share_a_serial(store: CqlStore) -> None:
    """Printers allocating for one site at once get disjoint, gap-free ranges."""
    site, num_threads, size = "120103-001", 6, 25
    allocator = TubeAllocator(store)
    start = threading.Barrier(num_threads)
    batches: list[TubeBatch] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def allocate(index: int) -> None:
        start.wait()
        try:
            batch = allocator.allocate(site, size, 10, f"printer-{index}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            with lock:
                errors.append(exc)
            return
        with lock:
            batches.append(batch)

    threads = [
        threading.Thread(target=allocate, args=(index,)) for index in range(num_threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [] == errors
    serials = sorted(
        serial
        for b in batches
        for serial in range(b.first_serial, b.first_serial + size)
    )
    assert list(range(num_threads * size)) == serials
    assert num_threads * size == _sequence(store, site)
    stored = allocator.batches(site)
    for batch in batches:
        found = stored.find(batch.first_serial + size - 1)
        assert found is not None
        assert (batch.first_serial, batch.size, batch.printer) == (
            found.first_serial,
            found.size,
            found.printer,
        )


def test_reprint_renders_the_same_sheet_again(
    settings: Settings, tmp_path: Path
) -> None:
    """A lost sheet is rendered again from the stored batch, byte for byte."""
    original = tmp_path / "original.pdf"
    printed = _print(settings, "120104-001", 9, original, "--capacity", "1")
    serials = _range(printed)
    again = tmp_path / "again.pdf"

    result = _sieve(
        settings,
        "reprint",
        "--site",
        "120104-001",
        "--serial",
        str(serials[4]),
        "--out",
        str(again),
    )

    assert 0 == result.exit_code, result.output
    assert original.read_bytes() == again.read_bytes()


def test_reprint_of_a_serial_never_allocated_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    """Only allocated batches can be reprinted; the message names the serial."""
    result = _sieve(
        settings,
        "reprint",
        "--site",
        "120105-001",
        "--serial",
        "500",
        "--out",
        str(tmp_path / "x.pdf"),
    )

    assert 1 == result.exit_code
    assert "serial 500 of 120105-001 was never allocated" in result.output
    assert not (tmp_path / "x.pdf").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "999999-001", "--count", "5"], "no site '999999-001'"),
        (["--site", "120101-0001", "--count", "5"], "no site '120101-0001'"),
        (["--site", "120106-001", "--count", "0"], "'--count'"),
        (["--site", "120106-001", "--count", "10001"], "'--count'"),
        (["--site", "120106-001", "--count", "x"], "'--count'"),
        (["--site", "120106-001", "--count", "5", "--capacity", "5"], "'--capacity'"),
    ],
)
def test_bad_print_requests_are_refused_before_allocating(
    settings: Settings,
    store: CqlStore,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    """Unknown site, count out of range or bad capacity: exit 2, nothing taken."""
    out = tmp_path / "bad.pdf"

    result = _sieve(settings, "print", *args, "--out", str(out))

    assert 2 == result.exit_code
    assert message in result.output
    assert not out.exists()
    assert None is _sequence(store, "120106-001")


def test_an_unwritable_output_path_is_refused_before_allocating(
    settings: Settings, store: CqlStore, tmp_path: Path
) -> None:
    """A missing directory is found before serials are handed out."""
    out = tmp_path / "missing" / "tubes.pdf"

    result = _print(settings, "120111-001", 5, out)

    assert 2 == result.exit_code
    assert f"directory {out.parent} does not exist" in result.output
    assert None is _sequence(store, "120111-001")


def test_boxes_renders_the_district_box_codes(
    settings: Settings, tmp_path: Path
) -> None:
    """Box labels need no allocation and scan to the district's box codes."""
    out = tmp_path / "boxes.pdf"

    result = _sieve(
        settings,
        "boxes",
        "--district",
        "120110",
        "--first",
        "40",
        "--count",
        "11",
        "--out",
        str(out),
    )

    assert 0 == result.exit_code, result.output
    expected = [make_box_code("120110", serial) for serial in range(40, 51)]
    assert sorted(expected) == sorted(_scan(out))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--district", "999999", "--first", "0", "--count", "3"], "no district"),
        (["--district", "120110", "--first", "99999", "--count", "2"], "99999"),
        (["--district", "120110", "--first", "0", "--count", "0"], "'--count'"),
        (["--district", "120110", "--first", "-1", "--count", "2"], "'--first'"),
    ],
)
def test_bad_box_requests_are_refused(
    settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    """Unknown district or a range outside the box code space: exit 2, no file."""
    out = tmp_path / "boxes.pdf"

    result = _sieve(settings, "boxes", *args, "--out", str(out))

    assert 2 == result.exit_code
    assert message in result.output
    assert not out.exists()


def test_check_says_what_is_wrong_with_each_bad_code(settings: Settings) -> None:
    """Good codes are described, bad ones get their reason; any bad exits 1."""
    good_tube = make_tube_code("120101-001", 42)
    good_box = make_box_code("120101", 17)
    unknown_site = make_tube_code("120101-999", 1)
    wrong_check = good_tube[:-1] + ("1" if good_tube[-1] == "0" else "0")

    result = _sieve(
        settings, "check", good_tube, good_box, unknown_site, wrong_check, "X12"
    )

    assert 1 == result.exit_code
    assert [
        f"{good_tube}\ttube site=120101-001 serial=42",
        f"{good_box}\tbox district=120101 serial=17",
        f"{unknown_site}\tinvalid: site 120101-999 is not in the city file",
        f"{wrong_check}\tinvalid: tube barcode check character does not match",
        "X12\tinvalid: barcode must start with T (tube) or B (box)",
    ] == result.output.splitlines()


def test_check_of_good_codes_exits_zero(settings: Settings) -> None:
    """All codes valid: exit 0."""
    result = _sieve(settings, "check", make_tube_code("120101-001", 0))

    assert 0 == result.exit_code, result.output


def test_a_site_out_of_serials_is_refused_with_the_reason(
    settings: Settings, store: CqlStore, tmp_path: Path
) -> None:
    """Past the last encodable serial the print fails whole and says why."""
    store.execute_sync(
        "INSERT INTO {ks}.tube_sequences (site, next_serial) VALUES (%s, %s)",
        ("120112-001", 9_999_995),
    )
    out = tmp_path / "full.pdf"

    result = _print(settings, "120112-001", 10, out)

    assert 1 == result.exit_code
    assert "allocation refused: site has no tube serials left" in result.output
    assert not out.exists()
    assert 9_999_995 == _sequence(store, "120112-001")
