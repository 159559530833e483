"""The console in a real browser, fed by a real gateway, Ray and the store."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from ray.cluster_utils import Cluster

from engine.config import Settings
from engine.store import CqlStore
from perf.device import DeviceReport, send_all
from sieve.v1 import ingest_pb2, operations_pb2, operations_pb2_grpc
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

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")

SITE = "120101-001"
DISTRICT = "120101"
DEVICE = f"{SITE}-D0007"
COUNT = 4_000
PREVIOUS = 600
"""Round-1 registrations stored before the console starts; it shows round 2."""


@pytest.fixture(scope="module")
def previous_round(settings: Settings, store: CqlStore, gateway: GatewayThread) -> int:
    """Round 1 stored through the gateway before the console starts."""
    regs = make_registrations(
        PREVIOUS, SITE, tubes=allocate_tubes(store, SITE, PREVIOUS), seed=40
    )
    sender = _stream_in_background(settings, regs)
    sender.join(120)
    acks = sender.report["r"].acks.values()  # type: ignore[attr-defined]
    assert PREVIOUS == sum(ack.status == ingest_pb2.STORED for ack in acks)
    return PREVIOUS


@pytest.fixture(scope="module")
def console_url(
    settings: Settings,
    gateway: GatewayThread,
    ray_local: Cluster,
    previous_round: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The console app in a subprocess, pointed at the module's gateway."""
    users = write_users(
        tmp_path_factory.mktemp("console") / "users.toml",
        {"cmd": ("command", "c-pw"), "op": ("operator", "o-pw")},
    )
    with serve_console(
        settings,
        users,
        tmp_path_factory.mktemp("console-log"),
        extra_env={
            "SIEVE_CONSOLE_REFRESH_S": "1",
            "SIEVE_CONSOLE_ROUND": "2",
            "SIEVE_CONSOLE_MILESTONES": "1000,3000,1000000",
            "SIEVE_RAY_ADDRESS": ray_local.address,
        },
        ready_path="/metrics",
        ready_text=b"sieve_gateway_up 1.0",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    with chromium(playwright_api) as instance:
        yield instance


def _chart_data(page: Any, testid: str, series: int = 0) -> list[Any]:
    handle = page.get_by_test_id(testid).element_handle()
    return list(
        page.evaluate(
            f"el => getElement(el).chart.getOption().series[{series}].data", handle
        )
    )


def _store_count(store: CqlStore, district: str, round_no: int) -> int:
    # A test-only cross-check: the console itself never scans.
    rows = store.execute_sync(
        "SELECT COUNT(*) FROM {ks}.registrations_by_minute"
        " WHERE round = %s AND district = %s ALLOW FILTERING",
        (round_no, district),
    )
    return int(rows[0].count)


def _cells(page: Any, testid: str) -> list[list[str]]:
    rows = page.locator(f'[data-testid="{testid}"] tbody tr')
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def _stream_in_background(settings: Settings, regs: list[Any]) -> threading.Thread:
    report: dict[str, DeviceReport] = {}

    async def send() -> None:
        async with grpc.aio.insecure_channel(settings.gateway_address) as channel:
            report["r"] = await send_all(
                channel, DEVICE, device_token(settings, DEVICE), regs, window=8
            )

    thread = threading.Thread(target=lambda: asyncio.run(send()), daemon=True)
    thread.report = report  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_console_shows_live_ingest(
    settings: Settings, store: CqlStore, console_url: str, browser: Any
) -> None:
    """Live chart grows over the previous round, counts match the store and the
    gateway, saturation shows this machine and store latency, command is
    refused operator pages."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tubes = allocate_tubes(store, SITE, COUNT)
    regs = make_registrations(COUNT, SITE, tubes=tubes, seed=41, round_no=2)
    page = login(browser, console_url, "op", "o-pw")

    before = sum(_chart_data(page, "city-chart"))
    sender = _stream_in_background(settings, regs)
    seen = [before]

    def grew() -> bool:
        total = sum(_chart_data(page, "city-chart"))
        if total > seen[-1]:
            seen.append(total)
        return len(seen) >= 3

    wait_for(grew, 90, "the per-minute chart to grow twice")
    sender.join(180)
    assert not sender.is_alive()
    acks = sender.report["r"].acks.values()  # type: ignore[attr-defined]
    assert COUNT == sum(ack.status == ingest_pb2.STORED for ack in acks)
    wait_for(lambda: COUNT == sum(_chart_data(page, "city-chart")), 20, "all stored")
    wait_for(
        lambda: PREVIOUS == sum(_chart_data(page, "city-chart", series=1)),
        20,
        "the previous round's curve",
    )
    reached = page.get_by_test_id("milestone-3000")
    wait_for(lambda: "reached" in reached.inner_text(), 20, "the 3000 milestone")
    assert "reached" in page.get_by_test_id("milestone-1000").inner_text()
    assert "reached" not in page.get_by_test_id("milestone-1000000").inner_text()
    page.screenshot(path=str(ARTIFACTS / "city.png"), full_page=True)

    page.goto(f"{console_url}/districts")
    expected = _store_count(store, DISTRICT, 2)
    assert COUNT == expected
    registered = page.get_by_test_id(f"registered-{DISTRICT}")
    wait_for(lambda: registered.inner_text() == str(expected), 30, "store count")
    assert str(expected) == registered.inner_text()
    assert "0.00" not in page.get_by_test_id(f"coverage-{DISTRICT}").inner_text()
    hourly = {row[0].split()[0]: row for row in _cells(page, "hourly")}
    assert f"{COUNT:,}" == hourly[DISTRICT][-1]
    assert COUNT == sum(int(cell.replace(",", "")) for cell in hourly[DISTRICT][1:-1])
    page.screenshot(path=str(ARTIFACTS / "districts.png"), full_page=True)

    page.get_by_test_id(f"drill-{DISTRICT}").click()
    page.wait_for_url(f"{console_url}/districts/{DISTRICT}")

    def site_row() -> list[str] | None:
        rows = [r for r in _cells(page, "sites") if r and r[0] == SITE]
        return rows[0] if rows and rows[0][2] == str(COUNT) else None

    assert wait_for(site_row, 20, "the site's count from the gateway")
    devices = {row[0]: row for row in _cells(page, "devices")}
    assert str(PREVIOUS + COUNT) == devices[DEVICE][4]
    assert "offline" == devices[DEVICE][2]
    assert devices[DEVICE][3].endswith("ago")
    page.screenshot(path=str(ARTIFACTS / "district-drill-down.png"), full_page=True)

    page.goto(f"{console_url}/saturation")
    cpu = page.get_by_test_id("cpu-total")
    wait_for(lambda: re.fullmatch(r"\d+%", cpu.inner_text()), 20, "CPU reading")
    assert page.get_by_text(f"This machine: {socket.gethostname()}").is_visible()
    cores = wait_for(lambda: _chart_data(page, "cpu-cores"), 20, "per-core CPU")
    assert os.cpu_count() == len(cores)
    ray_rows = page.locator('[data-testid="ray-nodes"] tbody tr')
    wait_for(lambda: 2 == ray_rows.count(), 30, "the two Ray nodes")

    def nodes_read() -> list[list[str]] | None:
        rows = _cells(page, "ray-nodes")
        return rows if all(re.match(r"\d+% \(", r[3]) for r in rows) else None

    for row in wait_for(nodes_read, 30, "both nodes' probes"):
        assert "no GPU" == row[6]  # this machine has none; nothing is made up
        assert "KiB/s" in row[5] or "MiB/s" in row[5]
    latency = wait_for(
        lambda: {r[0]: r for r in _cells(page, "store-latency")}.get("ingest"),
        20,
        "store latency",
    )
    assert int(latency[1].replace(",", "")) > 0
    assert re.fullmatch(r"≤ [\d.]+ ms", latency[3])
    actors = {r[0]: r for r in _cells(page, "actors")}
    assert {"shard-host-0", "shard-host-1"} <= set(actors)
    assert actors["shard-host-0"][5].isdigit()
    page.screenshot(path=str(ARTIFACTS / "saturation.png"), full_page=True)

    page.goto(f"{console_url}/operator")
    number = regs[0].document_number
    page.get_by_test_id("id-number").fill(number)
    page.get_by_test_id("lookup").click()
    result = page.get_by_test_id("lookup-result")
    wait_for(lambda: "registration" in result.inner_text(), 20, "look-up")
    shown = result.inner_text()
    assert shown.startswith(f"{number[:6]}********{number[-4:]}: 1 registration")
    assert number not in page.content()
    page.screenshot(path=str(ARTIFACTS / "operator.png"), full_page=True)

    command = login(browser, console_url, "cmd", "c-pw")
    response = command.goto(f"{console_url}/operator")
    assert 403 == response.status
    assert "may not open" in command.get_by_test_id("refused").inner_text()
    command.screenshot(path=str(ARTIFACTS / "operator-refused.png"))

    metrics = urllib.request.urlopen(f"{console_url}/metrics", timeout=5).read()
    assert b"sieve_console_host_cpu_percent" in metrics
    assert f'sieve_round_registered{{district="{DISTRICT}"}} {COUNT}.0'.encode() in (
        metrics
    )
    assert b'sieve_store_latency_ms{profile="ingest",quantile="0.99"}' in metrics
    assert b"sieve_ray_node_cpu_percent{" in metrics
    assert re.search(rb"sieve_ray_node_gpus\{[^}]*\} 0\.0", metrics)
    assert b'sieve_actor_restarts{actor="shard-host-0"}' in metrics
    assert b"sieve_gateways_answered 1.0" in metrics
    # The README's picture (docs/console.png) is refreshed from
    # artifacts/console/city.png by hand; a test run never edits tracked files.


def test_operations_refuses_a_drill_down_without_a_place(
    settings: Settings, gateway: GatewayThread, previous_round: int
) -> None:
    """ListDevices names what was wrong; GetSaturation relays store latency."""
    with grpc.insecure_channel(settings.gateway_address) as channel:
        make_stub = operations_pb2_grpc.OperationsStub
        ops = make_stub(channel)  # type: ignore[no-untyped-call]
        for request, message in (
            (operations_pb2.ListDevicesRequest(), "exactly one"),
            (operations_pb2.ListDevicesRequest(district="999999"), "unknown district"),
            (operations_pb2.ListDevicesRequest(site="nowhere"), "unknown site"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                ops.ListDevices(request, timeout=5)
            assert grpc.StatusCode.INVALID_ARGUMENT == caught.value.code()
            assert message in str(caught.value.details())
        reply = ops.ListDevices(
            operations_pb2.ListDevicesRequest(site=SITE, round=1), timeout=5
        )
        assert [(SITE, previous_round)] == [(s.site, s.stored) for s in reply.sites]
        assert DEVICE in [d.device for d in reply.devices]
        load = ops.GetSaturation(operations_pb2.SaturationRequest(), timeout=10)
        assert [0, 1] == [h.host for h in load.hosts]
        assert all(h.answered for h in load.hosts)
        ingest = [
            sum(p.counts)
            for h in load.hosts
            for p in h.store_latency
            if p.profile == "ingest"
        ]
        assert sum(ingest) > 0
