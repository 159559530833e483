"""The ``sieve ocr`` commands: read ID card photos with the server's OCR."""

from __future__ import annotations

import json
from pathlib import Path

import click
import structlog

from engine.logs import configure_logging

__all__ = ["ocr"]


@click.group()
def ocr() -> None:
    """Re-read ID card photos with the server's OCR models."""
    if not structlog.is_configured():
        configure_logging()


@ocr.command("read")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: file, name, id_number, confidence.",
)
@click.option(
    "--batch-size", default=32, show_default=True, help="Photos per model call."
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="onnxruntime threads (default: one per core).",
)
def read(
    files: tuple[Path, ...], as_json: bool, batch_size: int, threads: int | None
) -> None:
    """Read the name and ID number from each photo FILE.

    The full name and number are printed: this is an operator's tool for
    photos they already hold. Logs never carry them.
    """
    # Imported here: onnxruntime and OpenCV take ~0.4 s to load, and every
    # other `sieve` command would pay for them.
    from engine.ocr_reader import CardReader

    reader = CardReader(threads=threads)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        reads = reader.read_batch([path.read_bytes() for path in chunk])
        for path, result in zip(chunk, reads, strict=True):
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "file": str(path),
                            "name": result.name,
                            "id_number": result.id_number,
                            "confidence": round(result.confidence, 4),
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                valid = "" if result.id_valid else " (number fails its check)"
                click.echo(
                    f"{path}: {result.name} {result.id_number} "
                    f"confidence={result.confidence:.3f}{valid}"
                )


@ocr.command("flags")
@click.option("--round", "round_no", type=int, required=True)
@click.option("--district", required=True, help="District code, e.g. 120101.")
def flags(round_no: int, district: str) -> None:
    """List registrations whose photo OCR did not MATCH, one JSON line each.

    The correction workflow starts from these: the field the server read
    differently, its confidence, the site and when it was verified. Personal
    data stays sealed; operators open a record through the audited views.
    """
    from engine.config import Settings
    from engine.store import CqlStore

    store = CqlStore(Settings.from_env())
    try:
        rows = store.execute_sync(
            "SELECT registration_id, verdict, field, confidence, site, verified_at"
            " FROM {ks}.ocr_flags WHERE round = %s AND district = %s",
            (round_no, district),
            profile="lookup",
        )
    finally:
        store.close()
    for row in rows:
        click.echo(
            json.dumps(
                {
                    "registration_id": str(row.registration_id),
                    "verdict": row.verdict,
                    "field": row.field,
                    "confidence": round(row.confidence or 0.0, 3),
                    "site": row.site,
                    "verified_at": row.verified_at.isoformat()
                    if row.verified_at
                    else None,
                }
            )
        )
