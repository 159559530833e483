"""One bench run end to end: engine up, load, exactly-once check, ceilings, figures.

Order: start the engine process on a keyspace of the run's own; open every
device's stream and wait until the gateway holds them; offer the load while
printing progress (and profiling, if asked); let every device settle; stop
the engine; scan the store; measure the gRPC and store ceilings with the
engine stopped; judge the figures against the targets and write them.
Keyspaces are kept (see :data:`perf.ceiling_store.CEILING_KEYSPACE`).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import structlog

from engine.city import load_city
from engine.config import REPO_ROOT, Settings
from engine.pii import Keyring
from perf.ceiling_grpc import measure_grpc_ceiling
from perf.ceiling_store import measure_store_ceiling
from perf.cpu import CpuMeter, descendants
from perf.engine_proc import (
    PATCH_VARIABLE,
    EngineInfo,
    EngineProcess,
    fetch_stats,
    store_pid,
)
from perf.fleet import FleetSpec
from perf.loadgen import LoadGenerator, LoadResult
from perf.profiling import PySpy
from perf.progress import ProgressLine, Tick
from perf.report import add_ceilings, add_verdicts, compute_figures, write_json
from perf.scenarios import Scenario
from perf.simulate import LoadProfile, Simulator
from perf.storeview import StoreView
from perf.verify import check_store

__all__ = ["BenchOptions", "run_bench"]

log = structlog.get_logger()

STALL_S = 20.0
"""Stop waiting for streams once the gateway's count has not grown this long."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """How to run a scenario (not what the devices do)."""

    procs: int = 2
    hosts: int = 2
    ceilings: bool = True
    ceiling_seconds: float = 10.0
    ceiling_rate_per_s: float = 12_000.0
    ceiling_devices: int = 20_000
    verify: bool = True
    progress_s: float = 5.0
    profile_s: float = 0.0
    """Record the gateway and one shard host with py-spy this long (0: no)."""
    json_path: Path | None = None
    run_root: Path = REPO_ROOT / "var" / "bench"
    command: str = ""
    seed: int = field(default_factory=lambda: int(time.time()) % 100_000)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def _machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "host": platform.node(),
    }


def _stats(address: str) -> Any:
    try:
        return fetch_stats(address, timeout_s=3.0)
    except grpc.RpcError:
        return None


class _Run:
    """State of one run while it is going (keeps run_bench short)."""

    def __init__(self, scenario: Scenario, options: BenchOptions) -> None:
        self.scenario = scenario
        self.options = options
        stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        self.run_id = f"{scenario.name}_{stamp}"
        self.run_dir = options.run_root / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings = Settings.from_env(cql_keyspace=f"bench_{self.run_id}")
        self.keyring = Keyring.load(self.settings.keys_file, create=True)
        city = load_city(self.settings.city_config)
        profile = LoadProfile(devices=scenario.devices)
        self.devices = Simulator(profile, city, b"", "").pick_devices()
        if len(self.devices) < scenario.devices:
            log.warning(
                "devices_capped", wanted=scenario.devices, city=len(self.devices)
            )
        self.meter = CpuMeter()
        self.progress = ProgressLine(options.progress_s)
        self.extra: dict[str, Any] = {}

    def template(self, address: str) -> FleetSpec:
        s = self.scenario
        return FleetSpec(
            worker=0,
            address=address,
            token_key=self.keyring.device_token,
            devices=(),
            active=0,
            seconds=s.seconds,
            keyspace=self.settings.cql_keyspace,
            curve=s.curve,
            burst=s.burst,
            bad_share=s.bad_share,
            offline_share=s.offline_share,
            offline_mean_s=s.offline_mean_s,
            window=s.window,
            heartbeat_s=s.heartbeat_s,
            connect_per_s=s.connect_per_s,
            drain_s=s.drain_s,
            seed=self.options.seed,
        )

    def _tick(
        self, phase: str, load: LoadGenerator, info: EngineInfo, last: dict[str, Any]
    ) -> dict[str, Any]:
        progress = load.poll()
        cpu = self.meter.read()
        now = time.monotonic()
        stats = _stats(info.address)
        engine = cpu["gateway"] + cpu["shard_host"] + cpu["store"]
        tick = Tick(
            phase=phase,
            elapsed_s=now - last["start"],
            total_s=self.scenario.seconds,
            interval_s=now - last["t"],
            sent=progress.sent,
            acked=progress.acked,
            new_sent=progress.sent - last["sent"],
            new_acked=progress.acked - last["acked"],
            latencies_ms=load.take_fresh(),
            open_streams=stats.open_streams if stats else None,
            inflight=stats.inflight if stats else None,
            backpressure=stats.backpressure_events if stats else None,
            engine_cpu_s=engine - last["engine"],
            load_cpu_s=cpu["loadgen"] - last["load"],
            machine_cpu_s=cpu["machine"] - last["machine"],
            cores=CpuMeter.cores(),
        )
        self.progress.show(tick)
        if stats is not None and phase == "load":
            streams = self.extra.setdefault("open_streams_min", stats.open_streams)
            self.extra["open_streams_min"] = min(streams, stats.open_streams)
        return {
            "start": last["start"],
            "t": now,
            "sent": progress.sent,
            "acked": progress.acked,
            "engine": engine,
            "load": cpu["loadgen"],
            "machine": cpu["machine"],
        }

    def wait_connected(self, load: LoadGenerator, info: EngineInfo) -> int:
        expected = min(self.scenario.devices, len(self.devices))
        timeout_s = expected / self.scenario.connect_per_s * 3 + 120
        deadline = time.monotonic() + timeout_s
        best, best_at, shown = 0, time.monotonic(), 0.0
        while time.monotonic() < deadline:
            load.check_alive()
            load.poll()
            stats = _stats(info.address)
            held = stats.open_streams if stats else 0
            now = time.monotonic()
            if held > best:
                best, best_at = held, now
            if load.all_connected and held >= expected:
                return held
            if load.all_connected and now - best_at > STALL_S:
                log.warning("streams_stalled", held=best, wanted=expected)
                return best
            if now - shown >= self.options.progress_s:
                print(f"[connect] streams {held:,}/{expected:,}", flush=True)
                shown = now
            time.sleep(1.0)
        log.warning("streams_timeout", held=best, wanted=expected)
        return best

    def offer(self, info: EngineInfo, engine_pid: int) -> tuple[LoadResult, float]:
        options = self.options
        load = LoadGenerator(
            self.template(info.address),
            self.devices,
            self.scenario.active,
            options.procs,
            self.run_dir,
        )
        self.meter.add_role("gateway", lambda: [info.gateway_pid])
        self.meter.add_role("shard_host", lambda: list(info.host_pids))
        store = store_pid()
        self.meter.add_role("store", lambda: [store] if store else [])
        self.meter.add_role("ray_other", lambda: descendants(engine_pid))
        self.meter.add_role("loadgen", load.pids)
        self.meter.add_role("bench", lambda: [os.getpid()])
        try:
            view = StoreView(self.settings)
            load.start()
            self.extra["connections_held"] = self.wait_connected(load, info)
            self.meter.start()
            start = load.go()
            profilers = self._profile(info, start)
            last = {"start": start, "t": start, "sent": 0, "acked": 0}
            last |= {"engine": 0.0, "load": 0.0, "machine": 0.0}
            next_line = start + options.progress_s
            while not load.finished:
                load.check_alive()
                time.sleep(0.5)
                view.sample()
                if time.monotonic() >= next_line:
                    loading = time.monotonic() < start + self.scenario.seconds
                    phase = "load" if loading else "drain"
                    last = self._tick(phase, load, info, last)
                    next_line += options.progress_s
                else:
                    self.meter.read()
            result = load.finish()
            window_s = time.monotonic() - start
            self.extra["store_pools"] = view.summary()
            view.close()
            self.extra["cpu"] = self.meter.read()
            stats = _stats(info.address)
            if stats is not None:
                self.extra["backpressure_events"] = stats.backpressure_events
                self.extra["gateway_retry_acks"] = stats.retry_acks
            for name, profiler in profilers.items():
                summary = profiler.wait()
                if summary is not None:
                    self.extra.setdefault("profiles", {})[name] = {
                        "samples": summary.samples,
                        "file": str(profiler.out),
                        "inclusive": summary.inclusive,
                        "self": summary.self_time,
                    }
        finally:
            load.kill()
        return result, window_s

    def _profile(self, info: EngineInfo, start: float) -> dict[str, PySpy]:
        if self.options.profile_s <= 0:
            return {}
        length = min(self.options.profile_s, self.scenario.seconds)
        targets = {"gateway": info.gateway_pid, "shard_host": info.host_pids[0]}
        profilers = {
            name: PySpy(pid, self.run_dir / f"pyspy-{name}.txt", length)
            for name, pid in targets.items()
        }
        for profiler in profilers.values():
            profiler.start()
        return profilers

    def ceilings(self, address_template: FleetSpec) -> tuple[float | None, ...]:
        options = self.options
        if not options.ceilings:
            return None, None
        count = min(options.ceiling_devices, self.scenario.active, len(self.devices))
        grpc_ceiling = measure_grpc_ceiling(
            address_template,
            self.devices[: max(count, 1)],
            port=free_port(),
            procs=options.procs,
            seconds=options.ceiling_seconds,
            rate_per_s=options.ceiling_rate_per_s,
            out_dir=self.run_dir / "ceiling",
        )
        store = store_pid()
        before = psutil.Process(store).cpu_times() if store else None
        store_ceiling = measure_store_ceiling(
            self.settings, seconds=options.ceiling_seconds, procs=options.procs
        )
        if store and before is not None:
            after = psutil.Process(store).cpu_times()
            used = after.user + after.system - before.user - before.system
            store_ceiling["store_cpu_s"] = used
        self.extra["ceiling_detail"] = {"grpc": grpc_ceiling, "store": store_ceiling}
        return grpc_ceiling["per_s"], store_ceiling["per_s"]


def _batch_sizes(closing: dict[str, Any]) -> dict[str, Any]:
    batchers = closing.get("gateway_batchers", [])
    batches = sum(b["batches"] for b in batchers)
    records = sum(b["records"] for b in batchers)
    shard_batches = sum(
        shard.get("num_batches", 0)
        for host in closing.get("shards", [])
        for shard in host
    )
    return {
        "host_batches": batches,
        "records_per_host_batch": records / batches if batches else None,
        "shard_batches": shard_batches,
        "records_per_shard_batch": records / shard_batches if shard_batches else None,
        "store_errors": sum(
            shard.get("num_store_errors", 0)
            for host in closing.get("shards", [])
            for shard in host
        ),
    }


def run_bench(scenario: Scenario, options: BenchOptions) -> dict[str, Any]:
    """Run one scenario and return its figures (also written as JSON).

    Raises:
        RuntimeError: the engine or a load process failed to start or died.
    """
    run = _Run(scenario, options)
    engine = EngineProcess(
        run.settings.cql_keyspace, free_port(), options.hosts, run.run_dir
    )
    log.info("bench_started", run=run.run_id, keyspace=run.settings.cql_keyspace)
    try:
        info = engine.start()
        result, window_s = run.offer(info, engine.pid or 0)
    finally:
        closing = engine.stop()
    run.extra["engine_batches"] = _batch_sizes(closing)
    check = None
    if options.verify:
        check = check_store(run.settings, result.ids, result.status)
    figures = compute_figures(
        scenario, result, check, run.extra.pop("cpu"), window_s, CpuMeter.cores()
    )
    figures.update(run.extra)
    if scenario.name == "connections":
        figures["ingest_per_s"] = figures["throughput_per_s"]
    add_ceilings(figures, *run.ceilings(run.template("")))
    figures["ceiling_detail"] = run.extra.get("ceiling_detail")
    add_verdicts(figures)
    figures["meta"] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": options.command,
        "machine": _machine(),
        "keyspace": run.settings.cql_keyspace,
        "engine_settings": info.settings,
        "engine_patches": os.environ.get(PATCH_VARIABLE, ""),
        "scenario": {
            "notes": scenario.notes,
            "window": scenario.window,
            "bad_share": scenario.bad_share,
            "offline_share": scenario.offline_share,
            "heartbeat_s": scenario.heartbeat_s,
            "drain_s": scenario.drain_s,
        },
        "options": {
            "procs": options.procs,
            "hosts": options.hosts,
            "ceiling_seconds": options.ceiling_seconds,
            "ceiling_rate_per_s": options.ceiling_rate_per_s,
        },
        "run_dir": str(run.run_dir),
    }
    write_json(figures, run.run_dir / "result.json")
    if options.json_path is not None:
        write_json(figures, options.json_path)
    return figures
