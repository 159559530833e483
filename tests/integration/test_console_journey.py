"""The console's journey views in a real browser, after a journey over real gRPC.

One district's round goes the whole way through the Journey API (300
residents, 30 tubes, boxes, receipt, results with one POSITIVE); in a second
district two tubes are dispatched and never received. The districts page's
stage columns must equal :class:`~engine.stage_counts.StageCounter`'s totals,
coverage must name its source (city file, then the imported registry), and
the tube page must show the positive tube's stages in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from console.journey import COLUMNS, StageTotals
from engine.barcodes import make_box_code, make_tube_code
from engine.city import load_city
from engine.config import REPO_ROOT, Settings
from engine.journey_client import JourneyClient
from engine.pii import Keyring, PiiCipher
from engine.registry_import import RegistryImporter
from engine.stage_counts import StageCounter
from engine.store import CqlStore
from perf.device import send_all
from perf.journey_sim import JourneyOutcome, JourneyPlan, JourneySimulator
from sieve.v1 import ingest_pb2, journey_pb2
from tests.conftest import GatewayThread
from tests.console_support import (
    ARTIFACTS,
    chromium,
    login,
    serve_console,
    wait_for,
    write_users,
)
from tests.helpers import allocate_tubes, device_token, make_registrations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

playwright_api = pytest.importorskip("playwright.sync_api")

DISTRICT = "120104"
PEOPLE = 300
POSITIVE_INDEX = 3
ROAD = "120105"
ROAD_SITE = "120105-001"
ROAD_TUBES = 2
T = TypeVar("T")


@pytest.fixture(scope="module")
def started_ms() -> int:
    """When the module's round began."""
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def full_round(
    settings: Settings, gateway: GatewayThread, started_ms: int
) -> JourneyOutcome:
    """One district's whole journey over gRPC, one positive tube."""
    city = load_city(settings.city_config)
    site = sorted(s for s, v in city.sites.items() if v.district == DISTRICT)[0]
    plan = JourneyPlan(
        district=DISTRICT,
        sites=(site,),
        people=PEOPLE,
        collectors_per_site=5,
        tubes_per_box=10,
        lab_scanners=2,
        positive=(POSITIVE_INDEX,),
    )
    key = Keyring.load(settings.keys_file).device_token
    outcome = asyncio.run(JourneySimulator(plan, gateway.address, key).run())
    assert PEOPLE // 10 == len(outcome.tested)
    return outcome


@pytest.fixture(scope="module")
def on_the_road(settings: Settings, gateway: GatewayThread, store: CqlStore) -> str:
    """Two sealed tubes of another district dispatched and not yet received."""
    tubes = allocate_tubes(store, ROAD_SITE, ROAD_TUBES * 10)
    regs = make_registrations(ROAD_TUBES * 10, ROAD_SITE, tubes=tubes, seed=91)
    collector = f"{ROAD_SITE}-D0007"
    transporter = f"{ROAD}-T001"
    box = make_box_code(ROAD, 7)

    async def run() -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            report = await send_all(
                channel, collector, device_token(settings, collector), regs, window=4
            )
            statuses = {ack.status for ack in report.acks.values()}
            assert {ingest_pb2.STORED} == statuses
            phone = JourneyClient(channel, collector, device_token(settings, collector))
            truck = JourneyClient(
                channel, transporter, device_token(settings, transporter)
            )
            for tube in tubes:
                sealed = await phone.seal(tube, "C000001", 0)
                assert journey_pb2.DONE == sealed.status
            assert journey_pb2.DONE == (await truck.open_box(box, 1, ROAD_SITE)).status
            loaded = await truck.load(box, tubes)
            assert {journey_pb2.DONE} == {item.status for item in loaded.items}
            sent = await truck.dispatch(box, "津A12345", "LAB01")
            assert journey_pb2.DONE == sent.status

    asyncio.run(run())
    return box


@pytest.fixture(scope="module")
def console_url(
    settings: Settings,
    full_round: JourneyOutcome,
    on_the_road: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The console in a subprocess on this module's keyspace, round 1."""
    users = write_users(
        tmp_path_factory.mktemp("console") / "users.toml", {"cmd": ("command", "c-pw")}
    )
    with serve_console(
        settings,
        users,
        tmp_path_factory.mktemp("console-log"),
        extra_env={"SIEVE_CONSOLE_REFRESH_S": "1", "SIEVE_CONSOLE_COVERAGE_S": "1"},
        ready_path="/metrics",
        ready_text=b"sieve_journey_stage_tubes",
        timeout_s=90,
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    with chromium(playwright_api) as instance:
        yield instance


def _login(browser: Any, url: str) -> Any:
    return login(browser, url, "cmd", "c-pw", viewport=(1600, 1100))


def _off_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # Playwright's sync API runs an event loop in this thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _store_totals(store: CqlStore, started_ms: int) -> dict[str, StageTotals]:
    now_ms = time.time_ns() // 1_000_000
    found = _off_loop(
        lambda: StageCounter(store).districts(
            1, [DISTRICT, ROAD], started_ms - 60_000, now_ms
        )
    )
    return {code: StageTotals.from_minutes(c.minutes) for code, c in found.items()}


def _shown(page: Any, code: str) -> dict[str, int]:
    texts = {
        column: page.get_by_test_id(f"stage-{column}-{code}").inner_text()
        for column in COLUMNS
    }
    if "–" in texts.values():
        return {}  # not read yet
    return {column: int(text.replace(",", "")) for column, text in texts.items()}


def test_districts_page_shows_the_stores_stage_counts(
    console_url: str, browser: Any, store: CqlStore, started_ms: int
) -> None:
    """Every stage column of both districts and the city row equal the store's."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    totals = _store_totals(store, started_ms)
    wanted = {code: {c: t.count(c) for c in COLUMNS} for code, t in totals.items()}
    assert {
        "registered": PEOPLE,
        "sealed": PEOPLE // 10,
        "in_transit": 0,
        "received": PEOPLE // 10,
        "tested": PEOPLE // 10,
        "positive": 1,
    } == wanted[DISTRICT]
    assert ROAD_TUBES == wanted[ROAD]["in_transit"]
    assert 0 == wanted[ROAD]["received"]

    page = _login(browser, console_url)
    page.goto(f"{console_url}/districts")
    wait_for(
        lambda: (
            _shown(page, DISTRICT) == wanted[DISTRICT]
            and _shown(page, ROAD) == wanted[ROAD]
        ),
        60,
        "the stage columns to match the store",
    )
    assert wanted[DISTRICT] == _shown(page, DISTRICT)
    assert wanted[ROAD] == _shown(page, ROAD)
    city = {c: wanted[DISTRICT][c] + wanted[ROAD][c] for c in COLUMNS}
    assert city == _shown(page, "total")
    for stage in ("sealed", "dispatched", "received", "tested"):
        assert "–" != page.get_by_test_id(f"wait-{stage}-{DISTRICT}").inner_text()
    assert "–" == page.get_by_test_id(f"wait-tested-{ROAD}").inner_text()

    source = page.get_by_test_id("coverage-source")
    wait_for(lambda: "city file" in source.inner_text(), 30, "the coverage source")
    sampled = page.get_by_test_id(f"sampled-{DISTRICT}")
    wait_for(lambda: sampled.inner_text() == str(PEOPLE), 30, "sampled people")
    population = load_city(REPO_ROOT / "config" / "tianjin.toml").districts[DISTRICT]
    shown = page.get_by_test_id(f"expected-{DISTRICT}").inner_text()
    assert f"{population.population:,}" == shown
    page.screenshot(path=str(ARTIFACTS / "districts-journey.png"), full_page=True)

    with urllib.request.urlopen(f"{console_url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert (
        f'sieve_journey_stage_tubes{{district="{DISTRICT}",stage="positive"}} 1.0'
        in (text)
    )
    assert f'sieve_journey_stage_tubes{{district="{ROAD}",stage="in_transit"}} 2.0' in (
        text
    )


def test_coverage_switches_to_the_registry_once_imported(
    console_url: str,
    browser: Any,
    store: CqlStore,
    settings: Settings,
    full_round: JourneyOutcome,
    tmp_path: Path,
) -> None:
    """With a registry imported, expected is its residents and the page says so."""
    people = [p for tube in full_round.tubes for p in full_round.people[tube]]
    lines = [
        f"{p.id_number},{p.name},1380000{n:04d},和平路{n}号,{DISTRICT}"
        for n, p in enumerate(people[:200])
    ]
    registry_csv = tmp_path / "registry.csv"
    registry_csv.write_text(
        "id_number,name,phone,address,district\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    cipher = PiiCipher(Keyring.load(settings.keys_file))
    city = load_city(settings.city_config)
    report = _off_loop(
        lambda: RegistryImporter(store, cipher, city.districts).import_file(
            registry_csv
        )
    )
    assert 200 == report.progress.imported

    page = _login(browser, console_url)
    page.goto(f"{console_url}/districts")
    source = page.get_by_test_id("coverage-source")
    wait_for(lambda: "registry" in source.inner_text(), 30, "the registry source")
    expected = page.get_by_test_id(f"expected-{DISTRICT}")
    wait_for(lambda: expected.inner_text() == "200", 30, "the registry's residents")
    assert str(PEOPLE) == page.get_by_test_id(f"sampled-{DISTRICT}").inner_text()
    assert "150.00%" == page.get_by_test_id(f"coverage-{DISTRICT}").inner_text()
    assert "–" == page.get_by_test_id(f"coverage-{ROAD}").inner_text()
    page.screenshot(path=str(ARTIFACTS / "districts-registry.png"), full_page=True)


def _search(page: Any, code: str) -> str:
    message = page.get_by_test_id("tube-message")
    before = message.inner_text()
    page.get_by_test_id("tube-code").fill(code)
    page.get_by_test_id("tube-search").click()
    wait_for(lambda: message.inner_text() != before, 20, "the search answer")
    return str(message.inner_text())


def test_tube_page_shows_the_positive_tubes_journey(
    console_url: str, browser: Any, full_round: JourneyOutcome
) -> None:
    """Stages in order, the result and the facts; bad and unknown codes told."""
    (positive,) = full_round.positive
    page = _login(browser, console_url)
    page.get_by_role("link", name="Tubes").click()
    page.wait_for_url(f"{console_url}/tubes")

    assert positive == _search(page, positive.lower())
    facts = {
        key: page.get_by_test_id(f"tube-{key}").inner_text()
        for key in ("round", "district", "capacity", "bound", "stage", "result")
    }
    assert {
        "round": "1",
        "district": DISTRICT,
        "capacity": "10",
        "bound": "10",
        "stage": "TESTED",
        "result": "POSITIVE",
    } == facts
    rows = page.locator('[data-testid="timeline"] tbody tr')
    stages = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert ["SEALED", "BOXED", "DISPATCHED", "RECEIVED", "RESULT"] == stages
    times = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert times == sorted(times)
    assert all(times)
    page.screenshot(path=str(ARTIFACTS / "tube.png"), full_page=True)

    bad = _search(page, "T12010400100000X")
    assert bad.startswith("Not a tube barcode:")
    assert not page.get_by_test_id("tube-result").is_visible()
    page.screenshot(path=str(ARTIFACTS / "tube-bad-code.png"), full_page=True)

    unknown = make_tube_code(f"{DISTRICT}-001", 9_999_990)
    assert f"No such tube: {unknown}" == _search(page, unknown)
