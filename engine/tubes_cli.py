"""The ``sieve tubes`` commands: allocate and print tube labels, box labels, checks."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click
import structlog

from engine.barcodes import BarcodeError, parse_box_code, parse_tube_code
from engine.city import City, load_city
from engine.config import Settings
from engine.exceptions import IngestError
from engine.logs import configure_logging
from engine.tube_allocation import (
    CAPACITIES,
    MAX_BATCH,
    AllocationError,
    TubeAllocator,
)

__all__ = ["tubes"]

log = structlog.get_logger()

MAX_BOXES = 10_000
"""Most box labels one command renders."""


@click.group()
def tubes() -> None:
    """Tube and box labels: allocate, print and check barcodes."""
    if not structlog.is_configured():
        configure_logging()


@tubes.command("print")
@click.option("--site", required=True, help="Collection site id, e.g. 120101-001.")
@click.option(
    "--count",
    required=True,
    type=click.IntRange(1, MAX_BATCH),
    help=f"Tubes to allocate, 1..{MAX_BATCH}.",
)
@click.option(
    "--capacity",
    type=click.Choice([str(c) for c in CAPACITIES]),
    default="10",
    show_default=True,
    help="Samples per tube printed on the labels.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="PDF file to write.",
)
@click.option(
    "--printer",
    default=None,
    help="Name of the printing station, recorded with the batch (default: host).",
)
def print_labels(
    site: str, count: int, capacity: str, out: Path, printer: str | None
) -> None:
    """Allocate COUNT new tube serials for a site and write their label sheet."""
    from engine.labels import render_tube_sheet
    from engine.store import CqlStore

    settings = Settings.from_env()
    _require_site(_city(settings), site, settings)
    _require_parent(out)

    store = CqlStore(settings)
    try:
        store.connect()
        batch = TubeAllocator(store).allocate(
            site, count, int(capacity), printer or socket.gethostname()
        )
    except AllocationError as exc:
        raise click.ClickException(f"allocation refused: {exc}") from exc
    except IngestError as exc:
        # A timed-out compare-and-set may have advanced the counter: a retry
        # can skip serials but never hands one out twice.
        raise click.ClickException(
            f"allocation failed, no sheet written; run again: {exc}"
        ) from exc
    finally:
        store.close()

    last = batch.first_serial + batch.size - 1
    # The serials are now handed out: the sheet must be written or reprintable.
    try:
        _write_atomic(out, render_tube_sheet(batch))
    except OSError as exc:
        raise click.ClickException(
            f"serials {batch.first_serial}..{last} of {site} were allocated but "
            f"{out} could not be written ({exc.strerror}); print them with "
            f"`sieve tubes reprint --site {site} --serial {batch.first_serial}`"
        ) from exc
    log.info("tube_sheet_written", site=site, count=count, path=str(out))
    click.echo(
        f"allocated {site} serials {batch.first_serial}..{last} "
        f"({batch.size} tubes, {batch.capacity}-in-1) -> {out}"
    )


@tubes.command("reprint")
@click.option("--site", required=True, help="Collection site id, e.g. 120101-001.")
@click.option(
    "--serial",
    required=True,
    type=click.IntRange(0),
    help="Any serial of the batch to print again.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="PDF file to write.",
)
def reprint(site: str, serial: int, out: Path) -> None:
    """Write the label sheet of an already allocated batch again (no allocation)."""
    from engine.labels import render_tube_sheet
    from engine.store import CqlStore

    settings = Settings.from_env()
    _require_site(_city(settings), site, settings)
    _require_parent(out)

    store = CqlStore(settings)
    try:
        store.connect()
        batch = TubeAllocator(store).batches(site).find(serial)
    except IngestError as exc:
        raise click.ClickException(f"reading batches failed: {exc}") from exc
    finally:
        store.close()
    if batch is None:
        raise click.ClickException(f"serial {serial} of {site} was never allocated")

    _write_atomic(out, render_tube_sheet(batch))
    last = batch.first_serial + batch.size - 1
    click.echo(
        f"reprinted {site} serials {batch.first_serial}..{last} "
        f"({batch.size} tubes, {batch.capacity}-in-1) -> {out}"
    )


@tubes.command("boxes")
@click.option("--district", required=True, help="District code, e.g. 120101.")
@click.option(
    "--first", "first_serial", required=True, type=click.IntRange(0), help="First box."
)
@click.option(
    "--count",
    required=True,
    type=click.IntRange(1, MAX_BOXES),
    help=f"Box labels to render, 1..{MAX_BOXES}.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="PDF file to write.",
)
def boxes(district: str, first_serial: int, count: int, out: Path) -> None:
    """Write box labels FIRST..FIRST+COUNT-1 of a district (box codes are fixed)."""
    from engine.labels import render_box_sheet

    settings = Settings.from_env()
    if district not in _city(settings).districts:
        raise click.BadParameter(
            f"no district {district!r} in {settings.city_config}",
            param_hint="--district",
        )
    _require_parent(out)

    try:
        pdf = render_box_sheet(district, first_serial, count)
    except BarcodeError as exc:
        raise click.BadParameter(str(exc), param_hint="--first/--count") from exc
    _write_atomic(out, pdf)
    click.echo(
        f"box labels {district} {first_serial}..{first_serial + count - 1} -> {out}"
    )


@tubes.command("check")
@click.argument("codes", nargs=-1, required=True)
def check(codes: tuple[str, ...]) -> None:
    """Parse tube (T…) and box (B…) barcodes; exit 1 if any is bad.

    A well-formed code whose site or district is not in the city file is bad.
    """
    settings = Settings.from_env()
    city = _city(settings)
    any_bad = False
    for code in codes:
        verdict = _verdict(city, code)
        any_bad |= verdict.startswith("invalid")
        click.echo(f"{code}\t{verdict}")
    sys.exit(1 if any_bad else 0)


def _verdict(city: City, code: str) -> str:
    marker = code.strip().upper()[:1]
    try:
        if marker == "T":
            tube = parse_tube_code(code)
            if tube.site not in city.sites:
                return f"invalid: site {tube.site} is not in the city file"
            return f"tube site={tube.site} serial={tube.serial}"
        if marker == "B":
            box = parse_box_code(code)
            if box.district not in city.districts:
                return f"invalid: district {box.district} is not in the city file"
            return f"box district={box.district} serial={box.serial}"
    except BarcodeError as exc:
        return f"invalid: {exc}"
    return "invalid: barcode must start with T (tube) or B (box)"


def _city(settings: Settings) -> City:
    try:
        return load_city(settings.city_config)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc


def _require_site(city: City, site: str, settings: Settings) -> None:
    if site not in city.sites:
        raise click.BadParameter(
            f"no site {site!r} in {settings.city_config}", param_hint="--site"
        )


def _require_parent(out: Path) -> None:
    # Checked before allocating, so a typo in the path wastes no serials.
    parent = out.parent
    if not parent.is_dir():
        raise click.BadParameter(
            f"directory {parent} does not exist", param_hint="--out"
        )
    if not os.access(parent, os.W_OK):
        raise click.BadParameter(
            f"directory {parent} is not writable", param_hint="--out"
        )


def _write_atomic(out: Path, data: bytes) -> None:
    # A half-written PDF must never be mistaken for a complete sheet.
    temporary = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
