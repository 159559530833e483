"""Saturation page: this host, every Ray node (CPU, memory, network, GPU),
shard hosts and OCR actors, store latency and gateway pressure."""

from __future__ import annotations

from fastapi.responses import Response
from nicegui import ui

from console.auth import Page
from console.live import LiveState
from console.metrics import CPU_RED_PERCENT, SUSTAINED_S, Level
from console.pages.frame import frame, level_classes
from console.pages.saturation_tables import (
    ACTOR_COLUMNS,
    LATENCY_COLUMNS,
    NODE_COLUMNS,
    actor_rows,
    latency_rows,
    node_rows,
)
from console.session import Gate

__all__ = ["register"]


def _value(caption: str, testid: str) -> ui.label:
    with ui.card().classes("min-w-48"):
        ui.label(caption).classes("text-sm text-gray-500")
        return ui.label("–").classes("text-2xl").props(f'data-testid="{testid}"')


def _set(label: ui.label, text: str, level: Level) -> None:
    label.set_text(text)
    label.classes(replace=f"text-2xl {level_classes(level)}")
    label.props(f'data-level="{level}"')


def _table(testid: str, columns: list[dict[str, str]]) -> ui.table:
    return ui.table(columns=columns, rows=[]).props(
        f'data-testid="{testid}" dense flat'
    )


def register(gate: Gate, live: LiveState, write_timeout_s: float) -> None:
    """Add the saturation page at /saturation."""

    @ui.page("/saturation")
    def saturation_page() -> Response | None:
        user = gate.check(Page.DASHBOARD, "/saturation")
        if isinstance(user, Response):
            return user
        frame("Saturation", user)
        host_title = ui.label("This machine").classes("text-lg")
        with ui.row():
            cpu = _value("CPU, all cores (now)", "cpu-total")
            sustained = _value(f"CPU, mean of last {SUSTAINED_S:.0f} s", "cpu-sust")
            memory = _value("Memory used", "memory")
        cores = (
            ui.echart(
                {
                    "title": {
                        "text": "CPU per core (%)",
                        "textStyle": {"fontSize": 13},
                    },
                    "xAxis": {"type": "category", "data": []},
                    "yAxis": {"type": "value", "min": 0, "max": 100},
                    "series": [{"type": "bar", "data": []}],
                    "animation": False,
                }
            )
            .classes("w-full h-56")
            .props('data-testid="cpu-cores"')
        )
        gateways_title = ui.label("Gateways").classes("text-lg")
        with ui.row():
            streams = _value("Open device streams", "open-streams")
            inflight = _value("In flight (unacked)", "inflight")
            backpressure = _value("Backpressure events", "backpressure")
        ui.label("Ray nodes").classes("text-lg")
        nodes_table = _table("ray-nodes", NODE_COLUMNS)
        ui.label("Actors").classes("text-lg")
        actors_table = _table("actors", ACTOR_COLUMNS)
        ui.label("Store latency (all shard hosts)").classes("text-lg")
        latency_table = _table("store-latency", LATENCY_COLUMNS)
        ui.markdown(
            f"**Thresholds.** CPU is red when the mean over {SUSTAINED_S:.0f} s"
            f" is at or above {CPU_RED_PERCENT:.0f}% (the machine cannot take"
            " more load); amber from 70% sustained, or a spike past 85%."
            " Memory: amber from 80%, red from 90% used. In flight: amber from"
            " 50% of the gateway's limit, red from 90% (devices are about to be"
            " pushed back). Backpressure events: red while they are rising."
            " Store p99: amber from 20%, red from 50% of the write timeout"
            " (requests are close to failing into RETRY acks); red while"
            " errors rise. Actors: red when a host does not answer, amber when"
            " its batches wait for a free send slot."
        ).classes("text-sm text-gray-600")
        previous = {"backpressure": -1}

        def show() -> None:
            host = live.host
            if host is not None:
                host_title.set_text(f"This machine: {host.hostname}")
                _set(cpu, f"{host.cpu_total:.0f}%", host.cpu_level)
                _set(sustained, f"{host.cpu_sustained:.0f}%", host.cpu_level)
                _set(
                    memory,
                    f"{host.memory_percent:.0f}% of "
                    f"{host.memory_total_bytes / 2**30:.1f} GiB",
                    host.memory_level,
                )
                cores.options["xAxis"]["data"] = [
                    str(i) for i in range(len(host.cpu_per_core))
                ]
                cores.options["series"][0]["data"] = [
                    {
                        "value": round(v, 1),
                        "itemStyle": {
                            "color": "#dc2626" if v >= CPU_RED_PERCENT else "#2563eb"
                        },
                    }
                    for v in host.cpu_per_core
                ]
                cores.update()
                nodes_table.rows = node_rows(live.cluster, host)
                nodes_table.update()
            actors_table.rows = actor_rows(live.hosts, live.cluster)
            actors_table.update()
            latency_table.rows = latency_rows(live.hosts, write_timeout_s)
            latency_table.update()
            snap = live.ingest
            gateway = None if snap is None else snap.gateway
            if gateway is None:
                for label in (streams, inflight, backpressure):
                    _set(label, "unreachable", Level.RED)
                return
            gateways_title.set_text(
                f"Gateways ({gateway.answered} of {gateway.asked} answering)"
            )
            _set(streams, str(gateway.open_streams), Level.OK)
            share = gateway.inflight / max(live.max_inflight, 1)
            _set(
                inflight,
                f"{gateway.inflight:,} / {live.max_inflight:,}",
                Level.RED
                if share >= 0.9
                else Level.AMBER
                if share >= 0.5
                else Level.OK,
            )
            rising = 0 <= previous["backpressure"] < gateway.backpressure_events
            previous["backpressure"] = gateway.backpressure_events
            _set(
                backpressure,
                str(gateway.backpressure_events),
                Level.RED if rising else Level.OK,
            )

        show()
        ui.timer(live.refresh_s, show)
        return None
