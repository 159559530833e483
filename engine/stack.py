"""The composition root: wires city, keys, store, Ray shard hosts and gateway.

Everything else in ``engine`` runs without Ray; this module is where the
gateway meets the Ray actors of :mod:`actors`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
import ray
import structlog

from engine.auth import DeviceAuthenticator
from engine.city import City, load_city
from engine.config import Settings
from engine.exceptions import ConfigError
from engine.gateway import IngestGateway
from engine.grpc_server import GatewayServer
from engine.journey_gateway import JourneyGateway
from engine.journey_service import JourneyServicer
from engine.lookup_grpc import ResidentsServicer, build_residents
from engine.pii import Keyring
from engine.rounds_grpc import add_rounds_service
from engine.routing import DistrictRouter
from engine.schema import apply_migrations
from engine.store import CqlStore
from engine.tube_allocation import TubeAllocator

__all__ = ["GatewayStack", "prepare_store", "serve_forever", "start_gateway"]

log = structlog.get_logger()


def prepare_store(settings: Settings) -> list[int]:
    """Apply pending migrations once, before any shard connects.

    Concurrent schema changes from many processes can disagree in Cassandra,
    so only the process starting the stack migrates; shard hosts never do.
    """
    store = CqlStore(settings)
    try:
        replication = settings.cql_replication if settings.cql_create_keyspace else None
        return apply_migrations(store, replication=replication)
    finally:
        store.close()


@dataclass
class GatewayStack:
    """A running gateway and what it needs to stop cleanly."""

    server: GatewayServer
    gateway: IngestGateway
    router: DistrictRouter
    pool: Any
    hosts: list[Any]
    city: City
    ocr_actors: list[Any]
    residents: ResidentsServicer | None = None
    journey_store: CqlStore | None = None

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop taking streams, let open ones finish, close the server."""
        await self.server.stop(drain_s)
        await self.gateway.drain()
        if self.residents is not None:
            self.residents.close()
        if self.journey_store is not None:
            self.journey_store.close()


async def start_gateway(
    settings: Settings, *, num_hosts: int = 2, detached_hosts: bool = False
) -> GatewayStack:
    """Start shard hosts (or join existing ones) and a listening gateway.

    Ray must already be initialised in this process.
    """
    from actors.ocr_batcher import start_ocr_actors
    from actors.shard_host import read_host_stats
    from actors.shard_pool import RayShardPool, start_shard_hosts

    city = load_city(settings.city_config, default_shards=settings.shards_per_district)
    keyring = Keyring.load(settings.keys_file, create=settings.generate_keys)
    router = DistrictRouter(city, num_hosts)
    ocr_actors: list[Any] = []
    if settings.ocr_actors > 0:
        # Before the shard hosts: they look the OCR actors up by name. The
        # handles are kept: Ray collects a non-detached actor without them.
        ocr_actors = await asyncio.to_thread(
            start_ocr_actors,
            settings.ocr_actors,
            namespace=settings.ray_namespace,
            detached=detached_hosts,
        )
    hosts = await asyncio.to_thread(
        start_shard_hosts, settings, router, detached=detached_hosts
    )
    pool = RayShardPool(hosts, settings.shard_call_timeout_s)
    gateway = IngestGateway(
        settings, city, DeviceAuthenticator(city, keyring.device_token), pool, router
    )
    residents = await asyncio.to_thread(build_residents, settings, city, keyring)
    server = GatewayServer(
        gateway,
        settings.gateway_address,
        _credentials(settings),
        host_stats=lambda: read_host_stats(hosts),
        residents=residents,
    )
    add_rounds_service(server.server, settings, city, keyring)
    journey_store = CqlStore(settings)
    await asyncio.to_thread(journey_store.connect)
    journey = JourneyServicer(
        JourneyGateway(
            city,
            router,
            pool,
            TubeAllocator(journey_store),
            retry_after_ms=settings.backpressure_retry_ms,
        ),
        DeviceAuthenticator(city, keyring.device_token),
        journey_store,
    )
    journey.add_to(server.server)
    await server.start()
    return GatewayStack(
        server=server,
        gateway=gateway,
        router=router,
        pool=pool,
        hosts=hosts,
        city=city,
        ocr_actors=ocr_actors,
        residents=residents,
        journey_store=journey_store,
    )


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    cert, key = settings.gateway_tls_cert_file, settings.gateway_tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError(
            "TLS needs both gateway_tls_cert_file and gateway_tls_key_file"
        )
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])


def serve_forever(settings: Settings, *, num_hosts: int) -> None:
    """Run a gateway process until SIGTERM or SIGINT (``sieve gateway``)."""
    if settings.ray_address:
        ray.init(
            address=settings.ray_address,
            namespace=settings.ray_namespace,
            logging_level=logging.WARNING,
        )
    else:
        ray.init(
            namespace=settings.ray_namespace,
            logging_level=logging.WARNING,
            include_dashboard=False,
        )

    async def main() -> None:
        stack = await start_gateway(
            settings, num_hosts=num_hosts, detached_hosts=bool(settings.ray_address)
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        log.info("gateway_stopping")
        await stack.stop(settings.gateway_drain_s)

    try:
        asyncio.run(main())
    finally:
        ray.shutdown()
