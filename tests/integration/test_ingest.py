"""End to end: devices stream over gRPC, Ray shards write to Cassandra."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import ray
from ray.cluster_utils import Cluster

from engine.config import Settings
from engine.store import CqlStore
from perf.device import send_all
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

DEVICES = 50
PER_DEVICE = 400


def _fleet(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> list[tuple[str, list]]:
    sites = list(gateway.stack.city.sites)
    fleet = []
    for index in range(DEVICES):
        site = sites[index % len(sites)]
        device = f"{site}-D{index:04d}"
        tubes = allocate_tubes(store, site, PER_DEVICE)
        regs = make_registrations(PER_DEVICE, site, tubes=tubes, seed=index)
        fleet.append((device, regs))
    return fleet


async def _stream_all(
    settings: Settings, address: str, fleet: list[tuple[str, list]]
) -> list:
    async with grpc.aio.insecure_channel(address) as channel:
        return await asyncio.gather(
            *(
                send_all(
                    channel, device, device_token(settings, device), regs, window=32
                )
                for device, regs in fleet
            )
        )


def test_concurrent_devices_store_each_registration_once(
    settings: Settings, gateway: GatewayThread, store: CqlStore
) -> None:
    """50 devices x 400 registrations are all STORED, once; a resend is DUPLICATE."""
    fleet = _fleet(settings, gateway, store)
    ids = [r.registration_id for _, regs in fleet for r in regs]
    assert len(set(ids)) == DEVICES * PER_DEVICE

    reports = asyncio.run(_stream_all(settings, gateway.address, fleet))

    statuses = [ack.status for report in reports for ack in report.acks.values()]
    assert len(statuses) == len(ids)
    assert set(statuses) == {ingest_pb2.STORED}
    counts = stored_ids(store, ids)
    assert set(counts.values()) == {1}
    assert count_rows(store, "registrations") == len(ids)
    for table in INDEX_TABLES:
        assert count_rows(store, table) == len(ids), table

    resent = asyncio.run(_stream_all(settings, gateway.address, fleet))

    statuses = [ack.status for report in resent for ack in report.acks.values()]
    assert len(statuses) == len(ids)
    assert set(statuses) == {ingest_pb2.DUPLICATE}
    assert count_rows(store, "registrations") == len(ids)
    for table in INDEX_TABLES:
        assert count_rows(store, table) == len(ids), table


def test_shard_hosts_spread_over_the_ray_nodes(
    gateway: GatewayThread, ray_local: Cluster
) -> None:
    """With two Ray nodes, the two shard hosts run on different nodes."""
    nodes = {ray.get(host.node_id.remote()) for host in gateway.stack.hosts}

    assert 2 == len([n for n in ray.nodes() if n["Alive"]])
    assert 2 == len(nodes)
