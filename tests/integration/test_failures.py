"""Failures under load: a shard host killed mid-stream, the store stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import grpc
import pytest
import ray

from engine.config import Settings
from engine.exceptions import StoreError, StoreUnavailable
from engine.localstore import LocalCassandraNode
from engine.store import CqlStore
from perf.device import DeviceStream
from sieve.v1 import ingest_pb2
from tests.conftest import GatewayThread
from tests.helpers import (
    INDEX_TABLES,
    allocate_tubes,
    count_rows,
    device_token,
    make_registrations,
    stored_ids,
)

pytestmark = pytest.mark.integration

DURABLE = {ingest_pb2.STORED, ingest_pb2.DUPLICATE}


def test_killed_shard_host_loses_and_duplicates_nothing(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """SIGKILL of a shard host mid-stream: every registration stored exactly once."""
    sites = [
        "120103-001",
        "120103-002",
        "120105-001",
        "120105-002",
        "120116-001",
        "120116-002",
        "120111-001",
        "120111-002",
    ]
    fleet = [
        (
            f"{site}-D0003",
            make_registrations(
                500, site, tubes=allocate_tubes(store, site, 500), seed=300 + i
            ),
        )
        for i, site in enumerate(sites)
    ]
    ids = [r.registration_id for _, regs in fleet for r in regs]
    victim = gateway.stack.hosts[0]
    victim_pid = ray.get(victim.pid.remote())
    streams: list[DeviceStream] = []

    async def scenario() -> list:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            for device, regs in fleet:
                stream = DeviceStream(
                    channel, device, device_token(settings, device), window=16
                )
                for registration in regs:
                    stream.put(registration)
                stream.close()
                streams.append(stream)
            runs = [asyncio.ensure_future(s.run(deadline_s=240)) for s in streams]
            # Polls other tasks' progress: no event marks "a quarter acked".
            quarter = len(ids) // 4
            while sum(len(s.report.acks) for s in streams) < quarter:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            os.kill(victim_pid, signal.SIGKILL)
            return await asyncio.gather(*runs)

    reports = asyncio.run(scenario())

    acks = [ack for report in reports for ack in report.acks.values()]
    assert len(ids) == len(acks)
    assert {a.status for a in acks} <= DURABLE
    assert gateway.stack.pool.num_retries > 0, "the kill happened after the stream"
    assert victim_pid != ray.get(victim.pid.remote()), "Ray restarted the host"
    assert {1} == set(stored_ids(store, ids).values())
    for table in ("registrations", *INDEX_TABLES):
        assert len(ids) == count_rows(store, table), table


def test_stopped_store_gets_no_false_ack_and_resends_land(
    settings: Settings,
    gateway: GatewayThread,
    store: CqlStore,
    cassandra_node: LocalCassandraNode,
) -> None:
    """Store down: RETRY and no ack; store back: resends stored, earlier acks kept."""
    device = "120102-001-D0001"
    token = device_token(settings, device)
    tubes = allocate_tubes(store, "120102-001", 100)
    before = make_registrations(50, "120102-001", tubes=tubes[:5], seed=401)
    during = make_registrations(50, "120102-001", tubes=tubes[5:], seed=402)

    async def send(regs: list, deadline_s: float) -> DeviceStream:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stream = DeviceStream(channel, device, token, window=8)
            for registration in regs:
                stream.put(registration)
            stream.close()
            with contextlib.suppress(TimeoutError):
                await stream.run(deadline_s=deadline_s)
            return stream

    first = asyncio.run(send(before, 60))
    assert {ingest_pb2.STORED} == {a.status for a in first.report.acks.values()}

    cassandra_node.stop()
    try:
        outage = asyncio.run(send(during, 8))
    finally:
        started = time.monotonic()
        cassandra_node.start()
    store_restart_s = time.monotonic() - started

    assert {} == outage.report.acks, "nothing may be acked while the store is down"
    assert outage.report.num_retry_acks > 0
    resent = asyncio.run(send(during, 120))
    assert len(during) == len(resent.report.acks)
    assert {a.status for a in resent.report.acks.values()} <= DURABLE
    ids = [r.registration_id for r in before + during]
    _until_answering(store)
    assert {1} == set(stored_ids(store, ids).values())
    assert store_restart_s < 180


def _until_answering(store: CqlStore, timeout_s: float = 60) -> None:
    # This test's own session reconnects on its driver's back-off schedule,
    # which may run behind the engine's sessions after the node restarts.
    end = time.monotonic() + timeout_s
    while True:
        try:
            store.execute_sync("SELECT release_version FROM system.local")
            return
        except (StoreError, StoreUnavailable):
            if time.monotonic() > end:
                raise
            time.sleep(0.5)
