"""The ``sieve results``, ``sieve recall`` and ``sieve journey`` commands."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import structlog

from engine.city import City, Role, load_city
from engine.config import Settings
from engine.exceptions import IngestError
from engine.logs import configure_logging

__all__ = ["journey", "recall", "results"]


def _settings() -> Settings:
    if not structlog.is_configured():
        configure_logging()
    return Settings.from_env()


def _token(settings: Settings, city: City, device_id: str, role: Role | None) -> str:
    from engine.auth import make_device_token
    from engine.pii import Keyring

    entry = city.device(device_id)
    if entry is None:
        raise click.ClickException(f"no device {device_id} in {settings.city_config}")
    if role is not None and entry.role is not role:
        raise click.ClickException(
            f"device {device_id} is a {entry.role.value}, not a {role.value}"
        )
    return make_device_token(Keyring.load(settings.keys_file).device_token, device_id)


def _districts(city: City, district: str | None) -> list[str]:
    if district is None:
        return sorted(city.districts)
    if district not in city.districts:
        raise click.ClickException(f"no district {district} in the city file")
    return [district]


def _store(settings: Settings) -> Any:
    from engine.store import CqlStore

    store = CqlStore(settings)
    try:
        store.connect()
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    return store


@click.group()
def results() -> None:
    """Lab results."""


@results.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", required=True, help="The lab scanner, e.g. LAB01-L00.")
@click.option("--gateway", "address", default=None, help="host:port of a gateway.")
def results_upload(file: Path, device: str, address: str | None) -> None:
    """Check FILE (tube_barcode,result,tested_at) and upload its good rows.

    Bad rows are listed with their line numbers and left out; exit 1 if any
    row was bad, refused or not answered.
    """
    import grpc

    from engine.journey_client import JourneyClient, upload_results
    from engine.results_csv import parse_results_file

    settings = _settings()
    token = _token(settings, load_city(settings.city_config), device, Role.LAB)
    try:
        parsed = parse_results_file(file, now_ms=time.time_ns() // 1_000_000)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for error in parsed.errors:
        click.echo(f"{file.name}: {error}", err=True)

    async def send() -> Any:
        async with grpc.aio.insecure_channel(address or settings.gateway_address) as ch:
            return await upload_results(JourneyClient(ch, device, token), parsed.rows)

    try:
        summary = asyncio.run(send())
    except grpc.aio.AioRpcError as exc:
        raise click.ClickException(
            f"gateway refused the upload: {exc.code().name} {exc.details()}"
        ) from exc
    for tube, reason, message in summary.refused_tubes:
        click.echo(f"refused {tube}: {reason} {message}", err=True)
    refused = " ".join(f"{k}={v}" for k, v in sorted(summary.refused.items()))
    click.echo(
        f"rows={len(parsed.rows)} bad={len(parsed.errors)}"
        f" repeated={parsed.num_repeated} done={summary.done}"
        f" already_done={summary.already_done}"
        f" refused={sum(summary.refused.values())}"
        + (f" ({refused})" if refused else "")
        + f" not_answered={summary.not_answered}"
    )
    if parsed.errors or summary.refused or summary.not_answered:
        sys.exit(1)


@click.command("recall")
@click.option("--round", "round_no", required=True, type=click.IntRange(1))
@click.option("--district", required=True, help="District code, e.g. 120101.")
@click.option("--tube", default=None, help="One positive tube only.")
@click.option(
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
    help="Directory for recall-r<round>-<district>.csv (mode 0600).",
)
def recall(round_no: int, district: str, tube: str | None, out_dir: Path) -> None:
    """Everyone bound to the district's positive tubes, with registry contacts."""
    from engine.pii import Keyring, PiiCipher
    from engine.recall import Recall, write_recall_csv

    settings = _settings()
    _districts(load_city(settings.city_config), district)
    store = _store(settings)
    finder = Recall(store, PiiCipher(Keyring.load(settings.keys_file)))
    try:
        if tube is None:
            people = asyncio.run(finder.district(round_no, district))
        else:
            people = asyncio.run(finder.tube(tube))
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    wrong = [p for p in people if p.district != district or p.round != round_no]
    if wrong:
        raise click.ClickException(
            f"tube {wrong[0].tube} is of round {wrong[0].round},"
            f" district {wrong[0].district}"
        )
    path = write_recall_csv(people, out_dir, round_no, district)
    tubes = len({p.tube for p in people})
    missing = sum(1 for p in people if not p.phone)
    click.echo(
        f"people={len(people)} tubes={tubes} without_contact={missing} file={path}"
    )


@click.group()
def journey() -> None:
    """Tubes and boxes after registration: discrepancies, stages, one tube."""


@journey.command("discrepancies")
@click.option("--round", "round_no", required=True, type=click.IntRange(1))
@click.option("--district", default=None, help="One district (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def journey_discrepancies(round_no: int, district: str | None, as_json: bool) -> None:
    """Every discrepancy of a round, per district and site."""
    from engine.discrepancies import DiscrepancyReader

    settings = _settings()
    districts = _districts(load_city(settings.city_config), district)
    store = _store(settings)
    try:
        findings = DiscrepancyReader(store).round(round_no, districts)
    finally:
        store.close()
    for finding in findings:
        if as_json:
            click.echo(json.dumps(finding.as_dict()))
            continue
        trip = "" if finding.trip is None else f" box={finding.box} trip={finding.trip}"
        click.echo(
            f"{finding.district}\t{finding.site}\t{finding.kind}\t{finding.tube}"
            f"{trip}\t{finding.detail}"
        )
    if not as_json:
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        listed = " ".join(f"{k}={v}" for k, v in counts.items())
        click.echo(f"findings={len(findings)} {listed}".rstrip(), err=True)


@journey.command("tube")
@click.argument("code")
@click.option(
    "--device",
    default=None,
    help="Ask the gateway as this device (default: read the store directly).",
)
@click.option("--gateway", "address", default=None, help="host:port of a gateway.")
def journey_tube(code: str, device: str | None, address: str | None) -> None:
    """A tube's stages, result and events."""
    import grpc

    from engine.barcodes import BarcodeError, parse_tube_code

    try:
        tube = parse_tube_code(code).code
    except BarcodeError as exc:
        raise click.ClickException(f"{code}: {exc}") from exc
    settings = _settings()
    if device is not None:
        from engine.journey_client import JourneyClient

        token = _token(settings, load_city(settings.city_config), device, None)

        async def ask() -> Any:
            async with grpc.aio.insecure_channel(
                address or settings.gateway_address
            ) as channel:
                return await JourneyClient(channel, device, token).tube(tube)

        try:
            view = asyncio.run(ask())
        except grpc.aio.AioRpcError as exc:
            raise click.ClickException(f"{exc.code().name} {exc.details()}") from exc
    else:
        from engine.journey_service import read_tube

        store = _store(settings)

        async def read() -> Any:
            return await read_tube(store, tube)

        try:
            view = asyncio.run(read())
        finally:
            store.close()
    if not view.known:
        click.echo(f"{tube}\tunknown (no sample was ever bound or received)")
        sys.exit(1)
    click.echo(
        f"{tube}\tround={view.round} district={view.district} site={view.site}"
        f" capacity={view.capacity} bound={view.bound} stage={view.stage or '-'}"
        f" result={view.result or '-'}"
    )
    for event in view.events:
        click.echo(
            f"  {_iso(event.at_ms)}\t{event.stage}\t{event.actor}"
            f"\t{event.box}\t{event.detail}".rstrip()
        )


@journey.command("stages")
@click.option("--round", "round_no", required=True, type=click.IntRange(1))
@click.option("--district", default=None, help="One district (default: all).")
@click.option("--minutes", "per_minute", is_flag=True, help="Also each busy minute.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per district.")
def journey_stages(
    round_no: int, district: str | None, per_minute: bool, as_json: bool
) -> None:
    """Registered, sealed, dispatched, received, tested and positive per district.

    The window runs from the round's first registration minute to now (at
    most a week).
    """
    from engine.stage_counts import MAX_MINUTES, REGISTERED, STAGES, StageCounter

    settings = _settings()
    districts = _districts(load_city(settings.city_config), district)
    store = _store(settings)
    counter = StageCounter(store)
    try:
        window = counter.round_window(round_no)
        if window is None:
            raise click.ClickException(f"round {round_no} has no registrations")
        first_ms = window[0]
        last_ms = min(
            max(window[1], time.time_ns() // 1_000_000),
            first_ms + (MAX_MINUTES - 1) * 60_000,
        )
        counts = asyncio.run(counter.districts(round_no, districts, first_ms, last_ms))
    finally:
        store.close()
    names = (REGISTERED, *STAGES)
    for code, found in counts.items():
        means = found.mean_waited_ms
        if as_json:
            record = {
                "round": round_no,
                "district": code,
                "totals": found.totals,
                "mean_waited_ms": means,
            }
            if per_minute:
                record["minutes"] = [
                    {"minute_ms": m.minute_ms, **m.counts} for m in found.busy_minutes()
                ]
            click.echo(json.dumps(record))
            continue
        totals = " ".join(f"{n}={found.totals[n]}" for n in names)
        waits = " ".join(
            f"{stage}_wait_s={mean / 1000:.1f}"
            for stage, mean in means.items()
            if mean is not None
        )
        click.echo(f"{code}\t{totals}\t{waits}".rstrip())
        if per_minute:
            for minute in found.busy_minutes():
                row = " ".join(f"{n}={minute.counts.get(n, 0)}" for n in names)
                click.echo(f"  {_iso(minute.minute_ms)}\t{row}")


def _iso(epoch_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="seconds")
