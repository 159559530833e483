"""Registry import, round participation and comparison, end to end.

A registry of 1,000,000 residents (contacts for a few thousand imported from
CSV, the rest through the index fast path), two rounds of registrations sent
through the real gateway, a third with a shard host killed mid-round.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

import grpc
import numpy as np
import pytest
import ray
from click.testing import CliRunner

from engine.city import load_city
from engine.cli import main as cli_main
from engine.config import Settings
from engine.documents import DocumentType
from engine.pii import Keyring, PiiCipher
from engine.registry_import import RegistryImporter
from engine.registry_index import prefixes_of
from engine.rounds import RoundsReader, coverage
from engine.rounds_export import RowResolver
from engine.rounds_grpc import DISTRICT_HEADER, make_district_token
from engine.store import CqlStore
from perf.device import send_all
from perf.people import PersonFactory
from perf.registry_gen import RegistryGenerator, city_districts, write_csv
from sieve.v1 import ingest_pb2, rounds_pb2, rounds_pb2_grpc
from tests.conftest import GatewayThread
from tests.helpers import allocate_tubes, device_token

pytestmark = pytest.mark.integration

REGISTRY_SIZE = 1_000_000
WITH_CONTACTS = 3_000
BAD_LINES = {5: "phone", 77: "check character", 400: "not a district"}

Person = tuple[str, str]
"""(ID number, name)."""


class World:
    """The registry and the rounds sent, as the test knows them."""

    def __init__(self) -> None:
        self.district_of: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.sampled: dict[int, dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.visitors: set[str] = set()
        self.import_output = ""
        self.import_s = 0.0

    def everyone(self, round_no: int) -> set[str]:
        return set().union(*self.sampled[round_no].values())


def _sites(settings: Settings) -> dict[str, str]:
    city = load_city(settings.city_config)
    sites: dict[str, str] = {}
    for site in city.sites.values():
        sites.setdefault(site.district, site.id)
    return sites


async def _send(
    settings: Settings, address: str, by_site: dict[str, list[ingest_pb2.Registration]]
) -> list[int]:
    async with grpc.aio.insecure_channel(address) as channel:
        reports = await asyncio.gather(
            *(
                send_all(
                    channel,
                    f"{site}-D0001",
                    device_token(settings, f"{site}-D0001"),
                    regs,
                    window=32,
                )
                for site, regs in by_site.items()
            )
        )
    return [a.status for r in reports for a in r.acks.values()]


def _round(
    store: CqlStore,
    world: World,
    sites: dict[str, str],
    round_no: int,
    people: list[Person],
    rng: random.Random,
) -> dict[str, list[ingest_pb2.Registration]]:
    """Registrations of a round, each person at one random district's site."""
    placed: dict[str, list[Person]] = defaultdict(list)
    districts = sorted(sites)
    for person in people:
        district = world.district_of.get(person[0]) or rng.choice(districts)
        if rng.random() < 0.2:
            district = rng.choice(districts)
        placed[district].append(person)
        world.sampled[round_no][district].add(person[0])
    by_site = {}
    now_ms = int(time.time() * 1000)
    for district, group in placed.items():
        site = sites[district]
        tubes = allocate_tubes(store, site, len(group))
        by_site[site] = [
            ingest_pb2.Registration(
                registration_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                round=round_no,
                tube_barcode=tubes[i // 10],
                name=name,
                document_type=ingest_pb2.RESIDENT_ID_CARD,
                document_number=number,
                site_id=site,
                collector_id="C000001",
                captured_at_ms=now_ms,
            )
            for i, (number, name) in enumerate(group)
        ]
    return by_site


def _flush(gateway: GatewayThread) -> None:
    ray.get([host.flush_participation.remote() for host in gateway.stack.hosts])


@pytest.fixture(scope="module")
def world(
    settings: Settings,
    store: CqlStore,
    cipher: PiiCipher,
    gateway: GatewayThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    """A 1M registry, and rounds 1 and 2 sent through the gateway."""
    result = World()
    rng = random.Random(11)
    generator = RegistryGenerator(city_districts(settings), seed=11)
    districts, weights = zip(*city_districts(settings), strict=True)

    bulk = []
    for _ in range(REGISTRY_SIZE - WITH_CONTACTS):
        district = rng.choices(districts, weights)[0]
        number = generator.id_number(district)
        bulk.append((number, district))
        result.district_of[number] = district
    importer = RegistryImporter(store, cipher, districts)
    asyncio.run(importer.add_to_index(bulk))

    rows = list(generator.rows(WITH_CONTACTS))
    lines = [list(row) for row in rows]
    for line, field in BAD_LINES.items():
        bad = list(lines[line - 2])
        if field == "phone":
            bad[2] = "not-a-phone"
        elif field == "check character":
            bad[0] = bad[0][:17] + ("0" if bad[0][17] != "0" else "1")
        else:
            bad[4] = "999999"
        lines.insert(line - 2, bad)
    path = tmp_path_factory.mktemp("registry") / "registry.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_csv(handle, lines)
    env = {
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
    }
    started = time.monotonic()
    outcome = CliRunner().invoke(cli_main, ["registry", "import", str(path)], env=env)
    result.import_s = time.monotonic() - started
    assert 0 == outcome.exit_code, outcome.output
    result.import_output = outcome.output
    for row in rows:
        result.district_of[row.id_number] = row.district
        result.names[row.id_number] = row.name

    factory = PersonFactory(99)
    visitors = []
    while len(visitors) < 120:
        person = factory.person()
        if person.id_number not in result.district_of:
            visitors.append((person.id_number, person.name))
    result.visitors = {number for number, _ in visitors}
    contacts = [(r.id_number, r.name) for r in rows]
    first = rng.sample(contacts, 2000) + visitors[:80]
    second = rng.sample(contacts, 2000) + visitors[40:]
    sites = _sites(settings)
    for round_no, people in ((1, first), (2, second)):
        by_site = _round(store, result, sites, round_no, people, rng)
        statuses = asyncio.run(_send(settings, gateway.address, by_site))
        assert {ingest_pb2.STORED} == set(statuses)
        assert len(people) == len(statuses)
    _flush(gateway)
    return result


def test_bad_csv_rows_are_reported_and_counted(world: World) -> None:
    """Every bad line is named with its reason; every good line is imported."""
    output = world.import_output

    for line, reason in BAD_LINES.items():
        assert any(
            s.startswith(f"line {line}:") and reason in s for s in output.splitlines()
        ), line
    assert f"imported={WITH_CONTACTS} errors={len(BAD_LINES)}" in output
    assert f"residents={REGISTRY_SIZE}" in output


def test_expected_population_counts_the_whole_registry(
    world: World, store: CqlStore, cipher: PiiCipher
) -> None:
    """Expected population per district matches the residents generated."""
    from engine.registry import PopulationRegistry

    expected: dict[str, int] = defaultdict(int)
    for district in world.district_of.values():
        expected[district] += 1

    assert dict(expected) == PopulationRegistry(store, cipher).expected_population()


def test_contacts_join_by_id_number(
    world: World, store: CqlStore, cipher: PiiCipher
) -> None:
    """contacts() opens the registry's row; unknown numbers are absent."""
    from engine.registry import PopulationRegistry

    known = sorted(world.names)[:50]
    stranger = sorted(world.visitors)[0]

    found = asyncio.run(
        PopulationRegistry(store, cipher).contacts([*known, stranger.lower()])
    )

    assert set(known) == set(found)
    assert all(found[n].name == world.names[n] for n in known)
    assert all(found[n].phone.startswith("1") for n in known)


async def _lists(
    store: CqlStore, cipher: PiiCipher, round_no: int, against: list[int] | None
) -> dict[tuple[str, str], set[str]]:
    index, diffs = await RoundsReader(store, cipher).compare(round_no, against)
    resolver = RowResolver(store, cipher)
    result: dict[tuple[str, str], set[str]] = defaultdict(set)
    for district, diff in diffs.items():
        async for chunk in resolver.rows(diff, index, lists=("missed", "new")):
            for row in chunk:
                result[(district, row.list)].add(row.id_number)
    return result


def test_round_against_round_equals_set_differences(
    world: World, store: CqlStore, cipher: PiiCipher
) -> None:
    """Missed and new per district are the independently computed differences."""
    expected: dict[tuple[str, str], set[str]] = {}
    for district, people in world.sampled[1].items():
        expected[(district, "missed")] = people - world.everyone(2)
    for district, people in world.sampled[2].items():
        expected[(district, "new")] = people - world.everyone(1)

    found = asyncio.run(_lists(store, cipher, 2, [1]))

    assert {k: v for k, v in expected.items() if v} == dict(found)
    assert any(key[1] == "new" for key in found)


def test_round_against_registry_counts_and_visitors(
    world: World, store: CqlStore, cipher: PiiCipher
) -> None:
    """Missed: registered residents sampled nowhere; new: the visitors."""
    sampled = world.everyone(2)
    missed: dict[str, int] = defaultdict(int)
    for number, district in world.district_of.items():
        if number not in sampled:
            missed[district] += 1

    _, diffs = asyncio.run(RoundsReader(store, cipher).compare(2, None))

    assert dict(missed) == {d: x.num_missed for d, x in diffs.items() if x.num_missed}
    for district, diff in diffs.items():
        new = world.sampled[2].get(district, set()) & world.visitors
        assert len(new) == diff.num_new, district


def test_coverage_is_sampled_over_expected(
    world: World, store: CqlStore, cipher: PiiCipher
) -> None:
    """Coverage counts distinct people sampled per district against the registry."""
    result = asyncio.run(coverage(store, cipher, 2))

    for district, people in world.sampled[2].items():
        assert len(people) == result[district][0]
    assert REGISTRY_SIZE == sum(expected for _, expected in result.values())


def test_cli_exports_one_csv_per_district(
    world: World, settings: Settings, tmp_path: Path
) -> None:
    """`sieve rounds compare --out` writes the lists with registry contacts."""
    env = {
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
    }

    outcome = CliRunner().invoke(
        cli_main,
        ["rounds", "compare", "--round", "2", "--against", "1", "--out", str(tmp_path)],
        env=env,
    )

    assert 0 == outcome.exit_code, outcome.output
    for district, people in world.sampled[1].items():
        missed = people - world.everyone(2)
        path = tmp_path / f"{district}.csv"
        with path.open(encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["list"] == "missed"]
        assert missed == {r["id_number"] for r in rows}, district
        for row in rows:
            if row["on_registry"] == "yes":
                assert world.names[row["id_number"]] == row["name"]
                assert row["phone"] and row["address"]


def test_district_system_pulls_only_its_own_district(
    world: World, settings: Settings, gateway: GatewayThread
) -> None:
    """Rounds.Compare streams the caller's lists; other districts are refused."""
    district = max(world.sampled[1], key=lambda d: len(world.sampled[1][d]))
    other = next(d for d in world.sampled[1] if d != district)
    key = Keyring.load(settings.keys_file).device_token
    metadata = (
        (DISTRICT_HEADER, district),
        ("authorization", f"Bearer {make_district_token(key, district)}"),
    )
    request = rounds_pb2.CompareRequest(round=2, against_rounds=[1])

    async def pull(
        request: rounds_pb2.CompareRequest, metadata: tuple[tuple[str, str], ...]
    ) -> list[rounds_pb2.CompareMessage]:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = rounds_pb2_grpc.RoundsStub(channel)  # type: ignore[no-untyped-call]
            return [m async for m in stub.Compare(request, metadata=metadata)]

    messages = asyncio.run(pull(request, metadata))

    summary = messages[0].summary
    missed = {m.row.id_number for m in messages[1:] if m.row.list == rounds_pb2.MISSED}
    assert district == summary.district
    assert world.sampled[1][district] - world.everyone(2) == missed
    assert summary.missed + summary.new == len(messages) - 1
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        other_request = rounds_pb2.CompareRequest(round=2, district=other)
        asyncio.run(pull(other_request, metadata))
    assert grpc.StatusCode.PERMISSION_DENIED == denied.value.code()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(
            pull(request, ((DISTRICT_HEADER, district), ("authorization", "x")))
        )
    assert grpc.StatusCode.UNAUTHENTICATED == refused.value.code()


def test_killed_shard_host_loses_no_participation(
    world: World,
    settings: Settings,
    store: CqlStore,
    cipher: PiiCipher,
    gateway: GatewayThread,
) -> None:
    """SIGKILL of a shard host mid-round: the round's bitmaps still hold everyone."""
    rng = random.Random(5)
    people = rng.sample(sorted(world.names.items()), 1200)
    sites = _sites(settings)
    first = _round(store, world, sites, 3, people[:600], rng)
    second = _round(store, world, sites, 3, people[600:], rng)
    victim = gateway.stack.hosts[0]
    victim_pid = ray.get(victim.pid.remote())

    assert {ingest_pb2.STORED} == set(
        asyncio.run(_send(settings, gateway.address, first))
    )
    os.kill(victim_pid, signal.SIGKILL)
    statuses = asyncio.run(_send(settings, gateway.address, second))
    _flush(gateway)

    assert {ingest_pb2.STORED} == set(statuses)
    assert victim_pid != ray.get(victim.pid.remote())
    replayed = [
        s["participation_num_replayed"]
        for s in ray.get(victim.stats.remote())
        if "participation_num_replayed" in s
    ]
    assert replayed and replayed[0] > 0
    reader = RoundsReader(store, cipher)
    index = asyncio.run(reader.index())
    loaded = asyncio.run(reader.load_round(3, index))
    hashes = [cipher.lookup_hash(DocumentType.RESIDENT_ID_CARD, n) for n, _ in people]
    positions, unknown = index.locate(prefixes_of(hashes))
    assert 0 == unknown.size
    everyone = set().union(*(set(p.residents) for p in loaded.values()))
    assert set(np.asarray(positions).tolist()) == everyone
    for district, part in loaded.items():
        assert len(world.sampled[3][district]) == part.sampled, district
