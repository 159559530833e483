"""One load-generator process: its share of the virtual devices on one loop.

A :class:`Fleet` opens one stream per device (paced), waits for the parent's
go, then offers registrations: Poisson arrivals following a
:class:`~perf.curve.RateCurve`, each given to a random active device, or a
pre-built burst spread over a short window. Devices bind people to pooled
tubes, a share of input is deliberately bad (via
:meth:`perf.simulate.Simulator.make_registration`), and devices may go
offline, keeping what they capture, and resend the backlog on return. At the
end every device is brought back and closed; the fleet waits for final acks
(up to ``drain_s``) and writes one :class:`FleetResult` file.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from engine.auth import make_device_token
from engine.city import load_city
from engine.config import Settings
from engine.documents import check_id_character
from perf.curve import RateCurve
from perf.device import DeviceStream
from perf.fleet_result import collect, save
from perf.simulate import LoadProfile, Simulator
from perf.tube_supply import TubeSupply
from sieve.v1 import ingest_pb2

__all__ = ["BurstSpec", "Fleet", "FleetSpec", "run_fleet"]

TICK_S = 0.01
PROGRESS_S = 1.0


@dataclass(frozen=True, slots=True)
class BurstSpec:
    """``count`` registrations handed to devices within ``within_s`` of go."""

    count: int
    within_s: float = 1.0


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """Everything one load process needs; picklable."""

    worker: int
    address: str
    token_key: bytes
    devices: tuple[tuple[str, str, int], ...]
    """(device id, site, global index) of this process's devices."""
    active: int
    """The first ``active`` devices register people; the rest only idle."""
    seconds: float
    keyspace: str = ""
    """Where the engine under test keeps its rows (tubes are allocated
    there); empty for the ``SIEVE_*`` settings' own."""
    curve: RateCurve | None = None
    burst: BurstSpec | None = None
    pool_size: int = 10
    bad_share: float = 0.0
    offline_share: float = 0.0
    offline_mean_s: float = 30.0
    round: int = 1
    seed: int = 1
    window: int = 1
    backlog_window: int = 16
    heartbeat_s: float = 0.0
    channels: int = 4
    connect_per_s: float = 2_000.0
    drain_s: float = 60.0
    settle: bool = True
    """Wait for final acks at the end; False stops at once (ceiling runs)."""
    out_dir: str = "."


@dataclass(slots=True)
class _Device:
    id: str
    site: str
    index: int
    token: str
    stream: DeviceStream | None = None
    tube: str = ""
    in_tube: int = 0
    online: bool = True
    backlog: list[ingest_pb2.Registration] = field(default_factory=list)


class Fleet:
    """Runs one process's devices (see the module docstring).

    Args:
        spec: devices and load of this process.
        control: the parent's shared objects: ``events`` (queue), ``go``
            (event), ``start_at`` (shared monotonic time) and ``stop`` (event).
    """

    def __init__(self, spec: FleetSpec, control: dict[str, Any]) -> None:
        self.spec = spec
        self._control = control
        self._rng = random.Random(spec.seed * 7_919 + spec.worker)
        self._np_rng = np.random.default_rng(spec.seed * 104_729 + spec.worker)
        settings = (
            Settings.from_env(cql_keyspace=spec.keyspace)
            if spec.keyspace
            else Settings.from_env()
        )
        profile = LoadProfile(
            bad_share=spec.bad_share,
            round=spec.round,
            seed=spec.seed * 1_009 + spec.worker,
            pool_size=spec.pool_size,
        )
        self._sim = Simulator(
            profile,
            load_city(settings.city_config),
            spec.token_key,
            spec.address,
            TubeSupply(settings, spec.pool_size),
        )
        self._devices = [
            _Device(d, site, index, make_device_token(spec.token_key, d))
            for d, site, index in spec.devices
        ]
        self._active = self._devices[: spec.active]
        self._streams: list[DeviceStream] = []
        self._runners: set[asyncio.Task[None]] = set()
        self._channels: list[grpc.aio.Channel] = []
        self._ids: list[str] = []
        self._put_t: list[float] = []
        self._bad: list[bool] = []
        self._cursor: dict[int, int] = {}
        self._talking: list[DeviceStream] = []
        self._fatal: Counter[str] = Counter()
        self._offline_sessions = 0
        self._num_offline = 0
        self._returns: list[tuple[float, int, _Device]] = []
        self._burst_due: list[float] = []
        self._backlog_sent = 0
        self._deadline_s = 0.0

    def _loop_error(self, loop: Any, context: dict[str, Any]) -> None:
        error = context.get("exception")
        self._fatal[f"unretrieved:{type(error).__name__}"] += 1

    def _send(self, kind: str, payload: Any) -> None:
        self._control["events"].put((kind, self.spec.worker, payload))

    def _open(self, device: _Device, window: int) -> DeviceStream:
        channel = self._channels[len(self._streams) % len(self._channels)]
        stream = DeviceStream(
            channel,
            device.id,
            device.token,
            window=window,
            heartbeat_s=self.spec.heartbeat_s,
        )
        self._streams.append(stream)
        task = asyncio.ensure_future(self._run_stream(stream))
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)
        device.stream = stream
        return stream

    async def _run_stream(self, stream: DeviceStream) -> None:
        remaining = max(self._deadline_s - time.monotonic(), 1.0)
        try:
            await stream.run(deadline_s=remaining)
        except grpc.aio.AioRpcError as exc:
            self._fatal[exc.code().name] += 1
        except TimeoutError:
            self._fatal["DEADLINE"] += 1

    def _capture(self, device: _Device) -> ingest_pb2.Registration:
        if device.in_tube == 0:
            device.tube = self._sim.tubes.take(device.site)
        device.in_tube = (device.in_tube + 1) % self.spec.pool_size
        tube = device.tube
        collector = f"C{device.index:06d}"
        registration = self._sim.make_registration(
            device.site, tube, collector, self._rng
        )
        self._ids.append(registration.registration_id)
        self._put_t.append(time.monotonic())
        self._bad.append(_is_damaged(registration, device.site))
        return registration

    def _hand_over(
        self, device: _Device, registration: ingest_pb2.Registration
    ) -> None:
        if device.online and device.stream is not None:
            if id(device.stream) not in self._cursor:
                self._cursor[id(device.stream)] = 0
                self._talking.append(device.stream)
            device.stream.put(registration)
        else:
            device.backlog.append(registration)

    def _go_offline(self, now: float, count: int) -> None:
        # Random active devices; one already offline is simply skipped.
        for _ in range(count):
            device = self._active[self._rng.randrange(len(self._active))]
            if not device.online:
                continue
            if device.stream is not None:
                device.stream.close()
            device.online = False
            back_at = now + self._rng.expovariate(1 / self.spec.offline_mean_s)
            heapq.heappush(self._returns, (back_at, device.index, device))
            self._offline_sessions += 1
            self._num_offline += 1

    def _come_back(self, device: _Device) -> None:
        device.online = True
        self._num_offline -= 1
        self._open(device, self.spec.backlog_window)
        self._backlog_sent += len(device.backlog)
        for registration in device.backlog:
            self._hand_over(device, registration)
        device.backlog.clear()

    def _progress(self) -> None:
        fresh: list[float] = []
        for stream in self._talking:
            latencies = stream.report.latencies_ms
            key = id(stream)
            start = self._cursor[key]
            if len(latencies) > start:
                fresh.extend(latencies[start:])
                self._cursor[key] = len(latencies)
        acked = sum(self._cursor.values())
        self._send(
            "progress",
            {
                "sent": len(self._ids),
                "acked": acked,
                "fresh_ms": fresh,
                "offline": self._num_offline,
            },
        )

    async def _connect(self) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        self._channels = [
            grpc.aio.insecure_channel(self.spec.address, options=options)
            for _ in range(self.spec.channels)
        ]
        step = max(1, int(self.spec.connect_per_s * 0.05))
        for number, device in enumerate(self._devices, start=1):
            self._open(device, self.spec.window)
            if number % step == 0:
                await asyncio.sleep(0.05)
        self._send("connected", len(self._devices))

    def _prepare_burst(self) -> list[tuple[float, _Device, ingest_pb2.Registration]]:
        burst = self.spec.burst
        if burst is None or not self._active:
            return []
        planned = []
        for number in range(burst.count):
            device = self._active[number % len(self._active)]
            due = self._rng.uniform(0, burst.within_s)
            planned.append((due, device, self._capture(device)))
            self._burst_due.append(due)
        planned.sort(key=lambda item: item[0])
        return planned

    async def run(self) -> Path:
        """Connect, wait for go, offer the load, settle; return the result file."""
        spec = self.spec
        # Streams cut at the end of an overloaded run end in errors nobody
        # awaits; count them instead of printing each traceback.
        asyncio.get_running_loop().set_exception_handler(self._loop_error)
        self._deadline_s = time.monotonic() + 3_600 + spec.seconds + spec.drain_s
        await self._connect()
        # Allocating during the load would stall this loop; take tubes now.
        await asyncio.to_thread(self._sim.tubes.prefill, {d.site for d in self._active})
        planned = self._prepare_burst()
        go = self._control["go"]
        next_progress = time.monotonic()
        while not go.is_set():
            await asyncio.sleep(0.02)
            if time.monotonic() >= next_progress:
                self._progress()
                next_progress += PROGRESS_S
        start = self._control["start_at"].value
        self._deadline_s = start + spec.seconds + spec.drain_s
        await asyncio.sleep(max(start - time.monotonic(), 0.0))
        if planned:
            # Captured before go so building them does not slow the burst;
            # their put times are the moments they reach the device.
            self._put_t = [start + due for due in self._burst_due]
        await self._offer(start, planned)
        await self._settle(start)
        self._sim.tubes.close()
        return self._write(start)

    async def _offer(
        self,
        start: float,
        planned: list[tuple[float, _Device, ingest_pb2.Registration]],
    ) -> None:
        spec = self.spec
        off_rate = 0.0
        if spec.offline_share > 0:
            off_rate = spec.offline_share / (
                (1 - spec.offline_share) * spec.offline_mean_s
            )
        last, next_progress, position = 0.0, start + PROGRESS_S, 0
        stop = self._control["stop"]
        while not stop.is_set():
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= spec.seconds:
                break
            if spec.curve is not None and self._active:
                expected = spec.curve.count_between(last, elapsed)
                for _ in range(int(self._np_rng.poisson(expected))):
                    device = self._active[self._rng.randrange(len(self._active))]
                    self._hand_over(device, self._capture(device))
            while position < len(planned) and planned[position][0] <= elapsed:
                _, device, registration = planned[position]
                self._hand_over(device, registration)
                position += 1
            if off_rate:
                online = len(self._active) - self._num_offline
                expected = online * off_rate * (elapsed - last)
                self._go_offline(now, int(self._np_rng.poisson(expected)))
                while self._returns and self._returns[0][0] <= now:
                    self._come_back(heapq.heappop(self._returns)[2])
            last = elapsed
            if now >= next_progress:
                self._progress()
                next_progress += PROGRESS_S
            await asyncio.sleep(TICK_S)
        for _, device, registration in planned[position:]:
            self._hand_over(device, registration)

    async def _settle(self, start: float) -> None:
        while self._returns:
            self._come_back(heapq.heappop(self._returns)[2])
        for stream in self._streams:
            stream.close()
        if not self.spec.settle:
            for task in list(self._runners):
                task.cancel()
        deadline = start + self.spec.seconds + self.spec.drain_s
        while self._runners and time.monotonic() < deadline:
            await asyncio.wait(set(self._runners), timeout=PROGRESS_S)
            self._progress()
        for task in list(self._runners):
            task.cancel()
        if self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)
        self._progress()
        for channel in self._channels:
            await channel.close()

    def _write(self, start: float) -> Path:
        result = collect(
            worker=self.spec.worker,
            ids=self._ids,
            put_t=self._put_t,
            bad=self._bad,
            streams=self._streams,
            started_at=start,
        )
        result.num_offline_sessions = self._offline_sessions
        result.num_backlog_sent = self._backlog_sent
        result.fatal_errors = self._fatal
        return save(result, Path(self.spec.out_dir))


def run_fleet(spec: FleetSpec, control: dict[str, Any]) -> None:
    """Process entry: run a fleet and report ``done`` (or ``error``) to the parent."""
    from engine.logs import configure_logging

    configure_logging("WARNING")
    fleet = Fleet(spec, control)
    try:
        path = asyncio.run(fleet.run())
    except BaseException:
        control["events"].put(("error", spec.worker, traceback.format_exc()))
        raise
    control["events"].put(("done", spec.worker, str(path)))


def _is_damaged(registration: ingest_pb2.Registration, site: str) -> bool:
    # The three kinds of damage Simulator.make_registration deals out.
    number = registration.document_number
    return (
        registration.site_id != site
        or registration.name == "张3"
        or check_id_character(number[:17]) != number[17:]
    )
