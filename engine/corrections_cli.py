"""Operator commands: ``sieve corrections list|show|resolve``, ``sieve residents``."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from engine.city import load_city
from engine.config import Settings
from engine.corrections import CorrectionQueue, CorrectionState
from engine.corrections_candidates import CandidateFinder
from engine.corrections_merge import RegistrationEditor
from engine.lookup import Actor
from engine.pii import Keyring, PiiCipher
from engine.store import CqlStore

__all__ = ["corrections", "residents"]

T = TypeVar("T")


def _run(
    work: Callable[[CorrectionQueue, CandidateFinder], Coroutine[Any, Any, T]],
) -> T:
    settings = Settings.from_env()
    city = load_city(settings.city_config, default_shards=settings.shards_per_district)
    cipher = PiiCipher(Keyring.load(settings.keys_file))
    store = CqlStore(settings)
    store.connect()
    try:
        queue = CorrectionQueue(store, cipher, city, RegistrationEditor(store, cipher))
        finder = CandidateFinder(store, cipher, city)
        return asyncio.run(work(queue, finder))
    finally:
        store.close()


def _when(epoch_ms: int) -> str:
    if not epoch_ms:
        return "-"
    return dt.datetime.fromtimestamp(epoch_ms / 1000).strftime("%Y-%m-%d %H:%M")


@click.group()
def corrections() -> None:
    """Residents' correction requests: list, show with candidates, resolve."""


@corrections.command("list")
@click.option(
    "--state",
    type=click.Choice([s.value for s in CorrectionState]),
    default="OPEN",
    show_default=True,
)
@click.option("--limit", default=200, show_default=True)
def list_command(state: str, limit: int) -> None:
    """Requests in one state, oldest first."""
    items = _run(lambda queue, _: queue.queue(CorrectionState(state), limit))
    for item in items:
        click.echo(
            f"{item.id}\t{_when(item.submitted_at_ms)}\t{item.masked}"
            f"\t{item.site or '-'}\t{item.source}"
        )


@corrections.command("show")
@click.argument("correction_id")
@click.option("--operator", default=getpass.getuser, show_default="login name")
def show_command(correction_id: str, operator: str) -> None:
    """One request, its candidates (masked) and its history; the view is audited."""

    async def work(queue: CorrectionQueue, finder: CandidateFinder) -> None:
        request = await queue.get(correction_id)
        await queue.record(request.id, f"operator:{operator}", "viewed", "cli")
        click.echo(
            f"{request.id} {request.state.value} {request.masked_name}"
            f" {request.masked} phone {request.masked_phone}"
            f" round {request.round or '?'} site {request.site or '?'}"
            f" sampled {_when(request.sampled_at_ms)}"
        )
        report = await finder.find(request, dt.date.today())
        for note in report.notes:
            click.echo(f"  note: {note}")
        click.echo(f"candidates ({report.variants_checked} numbers checked):")
        for c in report.candidates:
            click.echo(
                f"  {c.registration_id}\t{c.source}\tname "
                f"{'matches' if c.name_matches else 'differs'} ({c.masked_name})"
                f"\t{c.masked_number} edits={c.id_edits}\tround {c.round}"
                f"\t{c.site}\t{_when(c.captured_at_ms)}\t{c.detail}"
            )
        click.echo("history:")
        for event in await queue.events(request.id):
            click.echo(
                f"  {_when(event.at_ms)}\t{event.actor}\t{event.action}\t{event.detail}"
            )

    _run(work)


@corrections.command("resolve")
@click.argument("correction_id")
@click.option("--merge", "registration_id", help="Registration to merge into.")
@click.option("--reject", is_flag=True, help="Reject the request.")
@click.option("--not-sampled", is_flag=True, help="The person was not sampled.")
@click.option("--note", default="", help="Why (required to reject or not-sampled).")
@click.option("--operator", default=getpass.getuser, show_default="login name")
def resolve_command(
    correction_id: str,
    registration_id: str | None,
    reject: bool,
    not_sampled: bool,
    note: str,
    operator: str,
) -> None:
    """Merge into a registration, reject, or mark not sampled (one of them)."""
    if sum([registration_id is not None, reject, not_sampled]) != 1:
        raise click.UsageError("give exactly one of --merge, --reject, --not-sampled")
    actor = Actor("operator", operator)

    async def work(queue: CorrectionQueue, _: CandidateFinder) -> str:
        if registration_id is not None:
            result = await queue.merge(correction_id, actor, registration_id, note)
            return f"merged: {result.describe()}"
        if reject:
            await queue.reject(correction_id, actor, note)
            return "rejected"
        await queue.mark_not_sampled(correction_id, actor, note)
        return "marked not sampled"

    click.echo(_run(work))


@click.group()
def residents() -> None:
    """Clients of the Residents service (resident app, grid workers)."""


@residents.command("token")
@click.argument("client_id")
def token_command(client_id: str) -> None:
    """Print a listed client's bearer token (needs the keys file)."""
    from engine.lookup_clients import make_client_token

    settings = Settings.from_env()
    if client_id not in settings.lookup_clients:
        raise click.ClickException(
            f"{client_id} is not in SIEVE_LOOKUP_CLIENTS "
            f"({', '.join(settings.lookup_clients)})"
        )
    key = Keyring.load(settings.keys_file).device_token
    click.echo(make_client_token(key, client_id))
