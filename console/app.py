"""Wiring: settings, city, users, live state, pages and /metrics."""

from __future__ import annotations

import logging
import secrets

import structlog
from fastapi.responses import Response
from nicegui import app

from console.auth import UserDirectory
from console.cluster import ClusterReader
from console.config import ConsoleSettings
from console.journey_source import JourneySource
from console.live import LiveState
from console.lookup import PersonLookup
from console.metrics import ConsoleMetrics
from console.pages import (
    city,
    corrections,
    districts,
    login,
    operator,
    saturation,
    sites,
    tubes,
)
from console.session import Gate
from console.sources import GatewayStoreSource
from engine.city import load_city
from engine.config import Settings

__all__ = ["build"]

log = structlog.get_logger()


def build(settings: Settings, console: ConsoleSettings) -> str:
    """Register pages and background work; return the session secret."""
    town = load_city(settings.city_config, default_shards=settings.shards_per_district)
    gate = Gate(UserDirectory.load(console.users_file))
    source = GatewayStoreSource(settings, console, town)
    metrics = ConsoleMetrics()
    journey = JourneySource(
        settings,
        town,
        round_no=console.round,
        settle_s=console.settle_s,
        recheck_s=console.recheck_s,
        coverage_s=console.coverage_s,
    )
    live = LiveState(
        source,
        metrics,
        refresh_s=console.refresh_s,
        max_inflight=settings.max_inflight_records,
        fleet=source.fleet,
        cluster=ClusterReader(settings.ray_namespace, settings.ocr_actors),
        journey=journey,
    )

    login.register(gate)
    city.register(gate, live, console.chart_minutes, console.milestones)
    districts.register(gate, live, town, console.chart_minutes)
    sites.register(gate, live, town)
    tubes.register(gate, journey)
    saturation.register(gate, live, settings.cql_write_timeout_s)
    desk = PersonLookup(settings, town)
    operator.register(gate, desk)
    corrections.register(gate, desk)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(
            metrics.exposition(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def connect_ray() -> None:
        if not settings.ray_address:
            return
        try:
            import ray

            ray.init(
                address=settings.ray_address,
                namespace=settings.ray_namespace,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
            log.info("ray_connected", address=settings.ray_address)
        except Exception as exc:  # noqa: BLE001 - the console runs without Ray
            log.warning("ray_unavailable", error=str(exc))

    async def on_startup() -> None:
        import asyncio

        await asyncio.to_thread(connect_ray)
        live.start()
        log.info("console_started", gateways=",".join(source.fleet.addresses))

    async def on_shutdown() -> None:
        await live.stop()
        source.close()
        journey.close()
        desk.close()

    app.on_startup(on_startup)
    app.on_shutdown(on_shutdown)
    return console.storage_secret or secrets.token_urlsafe(32)
