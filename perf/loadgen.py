"""The multi-process load generator: splits devices over fleets, merges results.

Each fleet (:mod:`perf.fleet`) is a spawned process with its own event loop,
so the load is not held to one core. The parent hands out the devices
interleaved (every site in every process), scales the offered curve by each
process's share of the active devices, and releases all of them at one
common monotonic instant (the clock is system-wide on Linux).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import pickle
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from perf.cpu import descendants
from perf.fleet import BurstSpec, FleetSpec, run_fleet
from perf.fleet_result import FleetResult

__all__ = ["LoadGenerator", "LoadResult", "Progress"]

log = structlog.get_logger()


@dataclass
class Progress:
    """Running totals of every fleet, for the progress display."""

    sent: int = 0
    acked: int = 0
    offline: int = 0
    connected: int = 0
    fresh_ms: list[float] = field(default_factory=list)
    """Latencies of acks since the last :meth:`LoadGenerator.take_fresh`."""


@dataclass
class LoadResult:
    """Every fleet's result, concatenated (arrays aligned per registration)."""

    ids: bytes
    put_t: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    ack_t: np.ndarray
    latency_ms: np.ndarray
    bad: np.ndarray
    started_at: float
    num_retry_acks: int = 0
    num_heartbeats: int = 0
    num_offline_sessions: int = 0
    num_backlog_sent: int = 0
    num_streams_opened: int = 0
    stream_errors: Counter[str] = field(default_factory=Counter)
    fatal_errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0

    @classmethod
    def merge(cls, parts: list[FleetResult], started_at: float) -> LoadResult:
        """Concatenate fleet results in worker order."""
        parts = sorted(parts, key=lambda part: part.worker)

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(part, name) for part in parts])

        merged = cls(
            ids=b"".join(part.ids for part in parts),
            put_t=joined("put_t"),
            status=joined("status"),
            reason=joined("reason"),
            ack_t=joined("ack_t"),
            latency_ms=joined("latency_ms"),
            bad=joined("bad"),
            started_at=started_at,
        )
        for part in parts:
            merged.num_retry_acks += part.num_retry_acks
            merged.num_heartbeats += part.num_heartbeats
            merged.num_offline_sessions += part.num_offline_sessions
            merged.num_backlog_sent += part.num_backlog_sent
            merged.num_streams_opened += part.num_streams_opened
            merged.stream_errors.update(part.stream_errors)
            merged.fatal_errors.update(part.fatal_errors)
            merged.cpu_s += part.cpu_s
        return merged


class LoadGenerator:
    """Runs ``procs`` fleet processes over one device list.

    Args:
        template: fleet settings shared by every process (its ``worker``,
            ``devices``, ``active``, ``curve`` and ``burst`` are filled in).
        devices: (device id, site) pairs; the first ``active`` register people.
        active: devices that register people; the others only idle.
        procs: load processes.
        out_dir: where fleets write their result files.
    """

    def __init__(
        self,
        template: FleetSpec,
        devices: list[tuple[str, str]],
        active: int,
        procs: int,
        out_dir: Path,
    ) -> None:
        self._context = mp.get_context("spawn")
        self._control: dict[str, Any] = {
            "events": self._context.Queue(),
            "go": self._context.Event(),
            "stop": self._context.Event(),
            "start_at": self._context.Value("d", 0.0),
        }
        self.specs = self._split(template, devices, active, max(1, procs), out_dir)
        self.progress = Progress()
        self._per_worker: dict[int, dict[str, Any]] = {}
        self._connected: dict[int, int] = {}
        self._done: dict[int, str] = {}
        self._errors: dict[int, str] = {}
        self._processes: list[Any] = []
        self.started_at = 0.0

    @staticmethod
    def _split(
        template: FleetSpec,
        devices: list[tuple[str, str]],
        active: int,
        procs: int,
        out_dir: Path,
    ) -> list[FleetSpec]:
        indexed = [(d, site, i) for i, (d, site) in enumerate(devices)]
        active = min(active, len(devices))
        specs: list[FleetSpec] = []
        for worker in range(procs):
            mine = tuple(indexed[worker::procs])
            mine_active = sum(1 for _, _, i in mine if i < active)
            share = mine_active / active if active else 0.0
            curve = template.curve.scaled(share) if template.curve else None
            burst = None
            if template.burst is not None:
                count = round(template.burst.count * share)
                if worker == procs - 1:
                    count = template.burst.count - sum(
                        s.burst.count for s in specs if s.burst is not None
                    )
                burst = BurstSpec(count=count, within_s=template.burst.within_s)
            specs.append(
                dataclasses.replace(
                    template,
                    worker=worker,
                    devices=mine,
                    active=mine_active,
                    curve=curve,
                    burst=burst,
                    connect_per_s=template.connect_per_s / procs,
                    out_dir=str(out_dir),
                )
            )
        return specs

    def start(self) -> None:
        """Spawn the fleets; they connect their devices and wait for go."""
        for spec in self.specs:
            process = self._context.Process(
                target=run_fleet,
                args=(spec, self._control),
                name=f"fleet-{spec.worker}",
                daemon=True,
            )
            process.start()
            self._processes.append(process)
        log.info("load_started", procs=len(self.specs))

    def pids(self) -> list[int]:
        """Pids of the fleet processes and anything they started."""
        result = []
        for process in self._processes:
            if process.pid is not None:
                result.append(process.pid)
                result.extend(descendants(process.pid))
        return result

    def poll(self) -> Progress:
        """Read what the fleets reported since the last call."""
        events = self._control["events"]
        while True:
            try:
                kind, worker, payload = events.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                self._per_worker[worker] = payload
                self.progress.fresh_ms.extend(payload["fresh_ms"])
            elif kind == "connected":
                self._connected[worker] = payload
            elif kind == "done":
                self._done[worker] = payload
            elif kind == "error":
                self._errors[worker] = payload
                log.error("fleet_failed", worker=worker, error=payload[-2000:])
        parts = self._per_worker.values()
        self.progress.sent = sum(part["sent"] for part in parts)
        self.progress.acked = sum(part["acked"] for part in parts)
        self.progress.offline = sum(part["offline"] for part in parts)
        self.progress.connected = sum(self._connected.values())
        return self.progress

    def take_fresh(self) -> list[float]:
        """Latencies reported since the last call (and forget them)."""
        fresh, self.progress.fresh_ms = self.progress.fresh_ms, []
        return fresh

    @property
    def all_connected(self) -> bool:
        """Every fleet has opened all its streams."""
        return len(self._connected) == len(self.specs)

    @property
    def finished(self) -> bool:
        """Every fleet has written its result (or failed)."""
        return len(self._done) + len(self._errors) == len(self.specs)

    def check_alive(self) -> None:
        """Raise if a fleet failed or died without reporting."""
        self.poll()
        if self._errors:
            raise RuntimeError(
                f"load process failed: {next(iter(self._errors.values()))}"
            )
        for process in self._processes:
            worker = int(process.name.split("-")[1])
            if not process.is_alive() and worker not in self._done:
                self.poll()
                if worker not in self._done:
                    raise RuntimeError(
                        f"load process {worker} died ({process.exitcode})"
                    )

    def go(self, lead_s: float = 0.3) -> float:
        """Release every fleet at ``lead_s`` from now; return that instant."""
        self.started_at = time.monotonic() + lead_s
        self._control["start_at"].value = self.started_at
        self._control["go"].set()
        return self.started_at

    def stop(self) -> None:
        """Ask the fleets to end their offering now (they still settle)."""
        self._control["stop"].set()

    def finish(self, timeout_s: float = 120.0) -> LoadResult:
        """Wait for every fleet's result and merge them."""
        deadline = time.monotonic() + timeout_s
        while not self.finished and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(0.2)
        self.check_alive()
        if not self.finished:
            self.kill()
            raise RuntimeError("load processes did not finish in time")
        parts = []
        for path in self._done.values():
            with Path(path).open("rb") as handle:
                parts.append(pickle.load(handle))
        for process in self._processes:
            process.join(30)
        return LoadResult.merge(parts, self.started_at)

    def kill(self) -> None:
        """End every fleet process still running."""
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(5)
