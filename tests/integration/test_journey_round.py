"""A district's round end to end over the real gateway: stages, recall, findings.

Ten thousand residents are registered ten to a tube by many collector
devices at once, every tube is sealed, boxed, dispatched, received and
tested through the Journey API, and the reports read back from the store
must agree with what was sent. A second district gets every kind of
discrepancy injected through the same API.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from engine.city import load_city
from engine.config import Settings
from engine.discrepancies import DiscrepancyReader, Kind
from engine.journey_client import JourneyClient
from engine.pii import Keyring, PiiCipher
from engine.recall import Recall
from engine.registry_import import RegistryImporter
from engine.stage_counts import REGISTERED, STAGES, StageCounter
from engine.store import CqlStore
from perf.journey_sim import JourneyOutcome, JourneyPlan, JourneySimulator
from tests.conftest import GatewayThread
from tests.helpers import device_token

pytestmark = pytest.mark.timeout(900)

CLEAN = "120101"
ASTRAY = "120102"
PEOPLE = 10_000
POSITIVE_INDEX = 7


def _sites(settings: Settings, district: str, count: int) -> tuple[str, ...]:
    city = load_city(settings.city_config)
    sites = sorted(s for s, site in city.sites.items() if site.district == district)
    return tuple(sites[:count])


@pytest.fixture(scope="module")
def started_ms() -> int:
    """When the module's round began (minute windows start here)."""
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def clean_round(
    settings: Settings, gateway: GatewayThread, started_ms: int
) -> JourneyOutcome:
    """The clean district's whole round, one positive tube."""
    plan = JourneyPlan(
        district=CLEAN,
        sites=_sites(settings, CLEAN, 2),
        people=PEOPLE,
        collectors_per_site=25,
        positive=(POSITIVE_INDEX,),
    )
    key = Keyring.load(settings.keys_file).device_token
    return asyncio.run(JourneySimulator(plan, gateway.address, key).run())


@pytest.fixture(scope="module")
def astray_round(settings: Settings, gateway: GatewayThread) -> JourneyOutcome:
    """A small round in another district with every discrepancy injected."""
    plan = JourneyPlan(
        district=ASTRAY,
        sites=_sites(settings, ASTRAY, 1),
        people=300,
        tubes_per_box=10,
        inject=frozenset(Kind),
    )
    key = Keyring.load(settings.keys_file).device_token
    return asyncio.run(JourneySimulator(plan, gateway.address, key).run())


def _env(settings: Settings) -> dict[str, str]:
    return {
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
        "SIEVE_GATEWAY_PORT": str(settings.gateway_port),
    }


def test_every_tube_is_tested_and_every_stage_count_agrees(
    clean_round: JourneyOutcome, store: CqlStore, started_ms: int
) -> None:
    """registered = 10 x sealed; sealed = dispatched = received = tested."""
    answers = clean_round.answers
    tubes = PEOPLE // 10
    # A resend after a RETRY whose write had landed is answered DUPLICATE.
    stored = answers["register:STORED"] + answers["register:DUPLICATE"]
    assert PEOPLE == stored, dict(answers)
    assert tubes == len(clean_round.tubes)

    def recorded(step: str) -> int:
        # A resend after a lost answer is told ALREADY_DONE; both are recorded.
        return answers[f"{step}:DONE"] + answers[f"{step}:ALREADY_DONE"]

    assert tubes == recorded("seal") == recorded("load") == recorded("receive")
    upload = clean_round.upload
    assert tubes == upload.done + upload.already_done
    assert not [k for k in answers if "REFUSED" in k or "TRY_AGAIN" in k], answers

    counts = asyncio.run(
        StageCounter(store).district(
            1, CLEAN, started_ms - 60_000, time.time_ns() // 1_000_000
        )
    )
    totals = counts.totals
    assert PEOPLE == totals[REGISTERED]
    assert {"sealed": tubes, "dispatched": tubes, "received": tubes} == {
        stage: totals[stage] for stage in ("sealed", "dispatched", "received")
    }
    assert tubes == totals["tested"]
    assert 1 == totals["positive"]
    means = counts.mean_waited_ms
    assert all(means[stage] is not None and means[stage] >= 0 for stage in STAGES)

    assert [] == DiscrepancyReader(store).district(1, CLEAN)


def test_the_cli_prints_the_same_stage_totals(
    clean_round: JourneyOutcome, settings: Settings
) -> None:
    """``sieve journey stages`` reads the same partitions."""
    from engine.cli import main

    result = CliRunner().invoke(
        main,
        ["journey", "stages", "--round", "1", "--district", CLEAN],
        env=_env(settings),
    )
    assert 0 == result.exit_code, result.output
    assert f"registered={PEOPLE} sealed=1000 dispatched=1000" in result.output
    assert "received=1000 tested=1000 positive=1" in result.output


def test_a_positive_tube_recalls_exactly_its_people_with_phones(
    clean_round: JourneyOutcome,
    store: CqlStore,
    cipher: PiiCipher,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Ten people, their names and numbers opened, phones joined from the registry."""
    tube = clean_round.tubes[POSITIVE_INDEX]
    assert [tube] == clean_round.positive
    people = clean_round.people[tube]
    neighbour = clean_round.people[clean_round.tubes[POSITIVE_INDEX + 1]][0]
    phones = {p.id_number: f"1380000{n:04d}" for n, p in enumerate(people)}
    registry_csv = tmp_path / "registry.csv"
    rows = [
        f"{p.id_number},{p.name},{phones[p.id_number]},和平路{n}号,{CLEAN}"
        for n, p in enumerate(people)
    ] + [f"{neighbour.id_number},{neighbour.name},13900000000,南京路1号,{CLEAN}"]
    registry_csv.write_text(
        "id_number,name,phone,address,district\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    city = load_city(settings.city_config)
    report = asyncio.run(
        RegistryImporter(store, cipher, city.districts).import_file(registry_csv)
    )
    assert 11 == report.progress.imported

    found = asyncio.run(Recall(store, cipher).district(1, CLEAN))
    assert 10 == len(found)
    assert {(p.name, p.id_number) for p in people} == {
        (p.name, p.document_number) for p in found
    }
    assert phones == {p.document_number: p.phone for p in found}
    assert {tube} == {p.tube for p in found}

    from engine.cli import main

    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        main,
        ["recall", "--round", "1", "--district", CLEAN, "--out", str(out)],
        env=_env(settings),
    )
    assert 0 == result.exit_code, result.output
    written = out / f"recall-r1-{CLEAN}.csv"
    lines = written.read_text(encoding="utf-8").splitlines()
    assert 11 == len(lines)
    assert 0o600 == written.stat().st_mode & 0o777
    assert all(phones[p.id_number] in "\n".join(lines) for p in people)


def test_recall_refuses_a_tube_that_is_not_positive(
    clean_round: JourneyOutcome, settings: Settings
) -> None:
    """A negative tube is no recall: the command says so and writes nothing."""
    from engine.cli import main

    negative = clean_round.tubes[0]
    result = CliRunner().invoke(
        main,
        ["recall", "--round", "1", "--district", CLEAN, "--tube", negative],
        env=_env(settings),
    )
    assert 0 != result.exit_code
    assert "not positive" in result.output


def _result_rows(store: CqlStore, tubes: list[str]) -> dict[str, list[Any]]:
    statement = store.prepare(
        "SELECT uploaded_at, upload_id, result FROM {ks}.tube_results WHERE tube = ?"
    )
    return {
        tube: [tuple(row) for row in store.session.execute(statement, (tube,))]
        for tube in tubes
    }


def test_a_repeated_upload_changes_nothing_and_bad_rows_are_named(
    clean_round: JourneyOutcome,
    store: CqlStore,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Same results again: all ALREADY_DONE, tube_results rows unchanged."""
    from engine.cli import main

    tubes = clean_round.tubes[:20]
    before = _result_rows(store, tubes)
    assert all(1 == len(rows) for rows in before.values())
    now_ms = time.time_ns() // 1_000_000
    lines = ["tube_barcode,result,tested_at"]
    for tube in tubes:
        result = "POSITIVE" if tube in clean_round.positive else "NEGATIVE"
        lines.append(f"{tube},{result},{now_ms}")
    lines.append("T000000,NEGATIVE,2026-05-01T09:00:00+08:00")
    upload = tmp_path / "results.csv"
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = CliRunner().invoke(
        main,
        ["results", "upload", str(upload), "--device", "LAB01-L00"],
        env=_env(settings),
    )
    assert 1 == result.exit_code, result.output
    assert f"line {len(lines)}:" in result.output
    assert "done=0 already_done=20 refused=0" in result.output
    assert before == _result_rows(store, tubes)


def test_a_transporter_may_not_upload_results(
    clean_round: JourneyOutcome, settings: Settings, gateway: GatewayThread
) -> None:
    """The lab role is checked by the gateway, not only by the CLI."""

    async def upload() -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            device = f"{CLEAN}-T000"
            client = JourneyClient(channel, device, device_token(settings, device))
            await client.results([])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(upload())
    assert grpc.StatusCode.PERMISSION_DENIED == caught.value.code()


def test_every_discrepancy_kind_is_detected_and_listed(
    astray_round: JourneyOutcome, store: CqlStore, settings: Settings
) -> None:
    """Each injected tube is found under its kind, and the CLI lists them all."""
    findings = DiscrepancyReader(store).district(1, ASTRAY)
    found = {(f.kind, f.tube) for f in findings}
    assert set(Kind) == {f.kind for f in findings}
    for kind, tubes in astray_round.injected.items():
        for tube in tubes:
            assert (Kind(kind), tube) in found
    short = astray_round.injected[Kind.BOX_SHORT][0]
    assert (Kind.BOXED_NOT_RECEIVED, short) in found

    from engine.cli import main

    result = CliRunner().invoke(
        main,
        ["journey", "discrepancies", "--round", "1", "--district", ASTRAY, "--json"],
        env=_env(settings),
    )
    assert 0 == result.exit_code, result.output
    assert len(findings) == len(result.output.strip().splitlines())


@pytest.mark.parametrize("over_grpc", [False, True])
def test_the_tube_command_shows_the_positive_tubes_history(
    clean_round: JourneyOutcome, settings: Settings, over_grpc: bool
) -> None:
    """From the store or over gRPC: every stage of the journey, in order."""
    from engine.cli import main

    tube = clean_round.positive[0]
    args = ["journey", "tube", tube.lower()]
    if over_grpc:
        args += ["--device", f"{CLEAN}-T001"]
    result = CliRunner().invoke(main, args, env=_env(settings))
    assert 0 == result.exit_code, result.output
    assert "result=POSITIVE" in result.output
    assert "bound=10" in result.output
    # Only stdout: a store driver warning on stderr is not part of the listing.
    stages = [line.split("\t")[1] for line in result.stdout.splitlines()[1:]]
    assert ["SEALED", "BOXED", "DISPATCHED", "RECEIVED", "RESULT"] == stages
