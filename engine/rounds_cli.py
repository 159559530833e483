"""``sieve registry`` and ``sieve rounds``: import residents, compare rounds."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from engine.config import Settings
from engine.pii import Keyring, PiiCipher
from engine.store import CqlStore

__all__ = ["registry", "rounds"]


@contextmanager
def _connected() -> Iterator[tuple[Settings, CqlStore, PiiCipher]]:
    settings = Settings.from_env()
    store = CqlStore(settings)
    store.connect()
    try:
        yield settings, store, PiiCipher(Keyring.load(settings.keys_file))
    finally:
        store.close()


@click.group()
def registry() -> None:
    """The population registry: residents and their contacts."""


@registry.command("import")
@click.argument("csv_file", type=click.Path(exists=True, path_type=Path))
@click.option("--concurrency", default=64, show_default=True)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(path_type=Path),
    help="Write bad rows here instead of to stderr.",
)
def registry_import(csv_file: Path, concurrency: int, errors_path: Path | None) -> None:
    """Import CSV_FILE (id_number,name,phone,address,district)."""
    from engine.city import load_city
    from engine.registry_import import ImportProgress, RegistryImporter, RowError

    errors = errors_path.open("w", encoding="utf-8") if errors_path else sys.stderr

    def on_error(error: RowError) -> None:
        print(error, file=errors)

    def on_progress(progress: ImportProgress) -> None:
        click.echo(
            f"rows={progress.rows} imported={progress.imported}"
            f" errors={progress.errors} rows_per_s={progress.rows_per_s:.0f}",
            err=True,
        )

    with _connected() as (settings, store, cipher):
        city = load_city(settings.city_config)
        importer = RegistryImporter(
            store, cipher, city.districts, concurrency=concurrency
        )
        report = asyncio.run(
            importer.import_file(csv_file, on_error=on_error, on_progress=on_progress)
        )
    if errors_path:
        errors.close()
    for line in report.repeated:
        click.echo(f"line {line}: ID number repeated later; later line kept", err=True)
    progress = report.progress
    click.echo(
        f"rows={progress.rows} imported={progress.imported} errors={progress.errors}"
        f" repeated={len(report.repeated)} version={report.version}"
        f" residents={report.residents} seconds={progress.elapsed_s:.1f}"
    )


@registry.command("population")
def registry_population() -> None:
    """Expected population per district on the current registry."""
    from engine.registry import PopulationRegistry

    with _connected() as (_, store, cipher):
        population = PopulationRegistry(store, cipher).expected_population()
    for district, residents in sorted(population.items()):
        click.echo(f"{district}\t{residents}")


@click.group()
def rounds() -> None:
    """Screening rounds: coverage and who was missed."""


def _against(values: tuple[str, ...]) -> list[int] | None:
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if items == ["registry"]:
        return None
    try:
        numbers = [int(item) for item in items]
    except ValueError:
        raise click.BadParameter(
            f"expected round numbers or 'registry', got {','.join(items)}",
            param_hint="--against",
        ) from None
    if not numbers:
        raise click.BadParameter("give rounds or 'registry'", param_hint="--against")
    return numbers


@rounds.command("compare")
@click.option("--round", "round_no", type=int, required=True)
@click.option(
    "--against",
    multiple=True,
    required=True,
    help="Earlier round(s) (repeat, or comma-separated), or 'registry'.",
)
@click.option("--district", default="", help="Only this district.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <district>.csv of the missed and new here.",
)
def rounds_compare(
    round_no: int, against: tuple[str, ...], district: str, out_dir: Path | None
) -> None:
    """Per district: how many were missed and how many are new."""
    from engine.rounds import RoundsReader
    from engine.rounds_export import RowResolver, write_district_csv

    baseline = _against(against)

    async def run(store: CqlStore, cipher: PiiCipher) -> None:
        index, diffs = await RoundsReader(store, cipher).compare(round_no, baseline)
        resolver = RowResolver(store, cipher)
        for code, diff in diffs.items():
            if district and code != district:
                continue
            line = f"{code}\tmissed={diff.num_missed}\tnew={diff.num_new}"
            if out_dir is not None:
                path = out_dir / f"{code}.csv"
                chunks = resolver.rows(diff, index, lists=("missed", "new"))
                rows = await write_district_csv(path, chunks)
                line += f"\t{path} ({rows} rows)"
            click.echo(line)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    with _connected() as (_, store, cipher):
        asyncio.run(run(store, cipher))


@rounds.command("coverage")
@click.option("--round", "round_no", type=int, required=True)
def rounds_coverage(round_no: int) -> None:
    """Sampled so far against expected population, per district."""
    from engine.rounds import coverage

    with _connected() as (_, store, cipher):
        result = asyncio.run(coverage(store, cipher, round_no))
    for code, (sampled, expected) in result.items():
        share = f"{sampled / expected:.1%}" if expected else "-"
        click.echo(f"{code}\tsampled={sampled}\texpected={expected}\t{share}")


@rounds.command("token")
@click.argument("district")
def rounds_token(district: str) -> None:
    """The bearer token of DISTRICT's system for the Rounds service."""
    from engine.rounds_grpc import make_district_token

    settings = Settings.from_env()
    click.echo(
        make_district_token(Keyring.load(settings.keys_file).device_token, district)
    )
