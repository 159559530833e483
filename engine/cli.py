"""The ``sieve`` command line: the local stack, the store, IDs, load and stats."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.config import REPO_ROOT, Settings
from engine.documents import DocumentType, InvalidDocument, normalize_document
from engine.exceptions import IngestError
from engine.logs import configure_logging

if TYPE_CHECKING:
    from engine.localstore import LocalCassandraNode

__all__ = ["main", "run"]


def _register_extensions() -> None:
    from engine.corrections_cli import corrections, residents
    from engine.journey_cli import journey, recall, results
    from engine.ocr_cli import ocr
    from engine.rounds_cli import registry, rounds
    from engine.tubes_cli import tubes
    from perf.cli import bench, plan

    main.add_command(ocr)
    main.add_command(registry)
    main.add_command(rounds)
    main.add_command(bench)
    main.add_command(plan)
    main.add_command(tubes)
    main.add_command(results)
    main.add_command(recall)
    main.add_command(journey)
    main.add_command(corrections)
    main.add_command(residents)


def _settings() -> Settings:
    return Settings.from_env()


@click.group()
def main() -> None:
    """Sieve: ingest engine for city-wide screening rounds."""
    configure_logging()


@main.group()
def store() -> None:
    """The local Cassandra node used in development and CI."""


def _node() -> LocalCassandraNode:
    from engine.localstore import local_node

    return local_node(_settings())


@store.command("up")
def store_up() -> None:
    """Fetch the jars if needed, start the node and wait until CQL answers."""
    node = _node()
    node.fetch()
    started = time.monotonic()
    node.start()
    click.echo(
        f"store up: {node.status().release_version} "
        f"({time.monotonic() - started:.1f} s)"
    )


@store.command("down")
def store_down() -> None:
    """Stop the node (data is kept)."""
    _node().stop()
    click.echo("store down")


@store.command("status")
def store_status() -> None:
    """Say whether the node runs and which version answers."""
    status = _node().status()
    if status.running:
        click.echo(f"running pid={status.pid} version={status.release_version}")
    else:
        click.echo("stopped")
        sys.exit(1)


@main.command()
def migrate() -> None:
    """Create the keyspace if missing and apply pending schema migrations."""
    from engine.stack import prepare_store

    applied = prepare_store(_settings())
    click.echo(f"applied migrations: {applied or 'none (schema current)'}")


@main.group("id")
def id_group() -> None:
    """Identity document numbers."""


@id_group.command("check")
@click.argument("numbers", nargs=-1, required=True)
@click.option(
    "--type",
    "doc_type",
    default="RESIDENT_ID_CARD",
    type=click.Choice([t.name for t in DocumentType]),
    help="Document type of every number.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def id_check(numbers: tuple[str, ...], doc_type: str, as_json: bool) -> None:
    """Check ID numbers with the gateway's own validator; exit 1 if any is bad."""
    today = dt.date.today()
    any_bad = False
    for number in numbers:
        try:
            normalize_document(DocumentType[doc_type], number, today)
            valid, reason = True, None
        except InvalidDocument as exc:
            valid, reason = False, exc.detail
        any_bad |= not valid
        if as_json:
            click.echo(
                json.dumps(
                    {"id": number, "valid": valid, "reason": reason}, ensure_ascii=False
                )
            )
        else:
            click.echo(f"{number}\t{'valid' if valid else f'invalid: {reason}'}")
    sys.exit(1 if any_bad else 0)


@main.group()
def devices() -> None:
    """Collector devices."""


@devices.command("token")
@click.argument("device_id")
def devices_token(device_id: str) -> None:
    """Print the bearer token of a generated device (needs the keys file)."""
    from engine.auth import make_device_token
    from engine.city import load_city
    from engine.pii import Keyring

    settings = _settings()
    city = load_city(settings.city_config)
    if city.device(device_id) is None:
        raise click.ClickException(f"no device {device_id} in {settings.city_config}")
    click.echo(
        make_device_token(Keyring.load(settings.keys_file).device_token, device_id)
    )


@main.command()
@click.option(
    "--hosts", default=2, show_default=True, help="Shard host actors to create or join."
)
def gateway(hosts: int) -> None:
    """Run a gateway process in the foreground until SIGTERM."""
    from engine.stack import serve_forever

    serve_forever(_settings(), num_hosts=hosts)


@main.command()
@click.option("--devices", "num_devices", default=300, show_default=True)
@click.option(
    "--interval-s",
    default=5.0,
    show_default=True,
    help="Mean seconds between people at one device.",
)
@click.option("--seconds", default=60.0, show_default=True)
@click.option("--bad-share", default=0.0, show_default=True)
@click.option("--round", "round_no", default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path))
def simulate(
    num_devices: int,
    interval_s: float,
    seconds: float,
    bad_share: float,
    round_no: int,
    json_path: Path | None,
) -> None:
    """Play collector devices against the gateway over real gRPC."""
    from engine.city import load_city
    from engine.pii import Keyring
    from perf.simulate import LoadProfile, Simulator

    settings = _settings()
    profile = LoadProfile(
        devices=num_devices,
        person_interval_s=interval_s,
        seconds=seconds,
        bad_share=bad_share,
        round=round_no,
    )
    simulator = Simulator(
        profile,
        load_city(settings.city_config),
        Keyring.load(settings.keys_file).device_token,
        settings.gateway_address,
    )

    def progress(result) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"sent={len(result.sent_ids)}", err=True)

    result = asyncio.run(simulator.run(progress))
    summary = {
        "sent": len(result.sent_ids),
        "acked": result.acked,
        "statuses": dict(result.statuses),
        "rejected_by_reason": dict(result.reasons),
        "retry_acks": result.num_retry_acks,
        "seconds": round(result.seconds, 1),
    }
    click.echo(json.dumps(summary))
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2))


@main.command()
@click.option(
    "--devices",
    "num_devices",
    default=300,
    show_default=True,
    help="Simulated devices in the built-in load (0: none).",
)
@click.option("--interval-s", default=5.0, show_default=True)
@click.option("--hosts", default=2, show_default=True)
@click.option(
    "--watch-s",
    default=0.0,
    help="Print per-minute counts for this long (0: until Ctrl-C).",
)
def up(num_devices: int, interval_s: float, hosts: int, watch_s: float) -> None:
    """Start store, Ray, gateway and a small load; print per-minute counts."""
    from engine.devstack import DevStack, LoadOptions

    settings = _settings()
    load = (
        LoadOptions(devices=num_devices, person_interval_s=interval_s)
        if num_devices
        else None
    )
    try:
        DevStack(settings, REPO_ROOT).up(hosts=hosts, load=load)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stack up: gateway {settings.gateway_address}; "
        "`sieve down` stops it. Per-minute counts follow (Ctrl-C to stop "
        "watching; the stack keeps running)."
    )
    with contextlib.suppress(KeyboardInterrupt):
        _watch(settings, watch_s)


@main.command("console")
def console_cmd() -> None:
    """Serve the operations console (SIEVE_CONSOLE_HOST:PORT, 127.0.0.1:8080)."""
    from console.main import main as console_main

    console_main()


@main.command()
def down() -> None:
    """Stop everything `sieve up` started."""
    from engine.devstack import DevStack

    DevStack(_settings(), REPO_ROOT).down()
    click.echo("stack down")


@main.command()
@click.option("--minutes", default=5, show_default=True)
def stats(minutes: int) -> None:
    """Print the gateway's per-district counts and recent minutes."""
    reply = _fetch_stats(_settings().gateway_address, minutes)
    for district in reply.districts:
        recent = " ".join(
            f"{_hhmm(m.minute_ms)}={m.count}" for m in district.per_minute
        )
        click.echo(
            f"{district.district} {district.name}\tstored={district.stored}"
            f" duplicate={district.duplicate} rejected={district.rejected}"
            f"\t{recent}"
        )


def _fetch_stats(address: str, minutes: int):  # type: ignore[no-untyped-def]
    import grpc

    from sieve.v1 import operations_pb2, operations_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        make_stub = operations_pb2_grpc.OperationsStub
        stub = make_stub(channel)  # type: ignore[no-untyped-call]
        return stub.GetIngestStats(
            operations_pb2.IngestStatsRequest(minutes=minutes), timeout=5
        )


def _hhmm(minute_ms: int) -> str:
    return dt.datetime.fromtimestamp(minute_ms / 1000).strftime("%H:%M")


def _watch(settings: Settings, watch_s: float) -> None:
    end = time.monotonic() + watch_s if watch_s else float("inf")
    while time.monotonic() < end:
        time.sleep(min(10.0, max(end - time.monotonic(), 0.0)))
        reply = _fetch_stats(settings.gateway_address, 2)
        per_minute: dict[int, int] = {}
        for district in reply.districts:
            for minute in district.per_minute:
                per_minute[minute.minute_ms] = (
                    per_minute.get(minute.minute_ms, 0) + minute.count
                )
        total = sum(d.stored for d in reply.districts)
        minutes = "  ".join(
            f"{_hhmm(m)}: {c}/min" for m, c in sorted(per_minute.items())
        )
        click.echo(
            f"{time.strftime('%H:%M:%S')} stored={total} streams="
            f"{reply.open_streams} {minutes}"
        )


_register_extensions()


def run() -> None:
    """Entry point of ``sieve``: engine errors end in one line, not a traceback."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except IngestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
