"""The gRPC half of the ceiling: the same load fed to the do-nothing server.

The stub (:mod:`perf.stub_server`) runs as its own process; the same fleets,
devices and message mix as the engine run are pointed at it with an offered
rate above what it can answer, and the acks per second over the window are
the ceiling. Client and server share this machine's cores, as the engine and
its load do in the run proper.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import structlog

from engine.config import REPO_ROOT
from perf.curve import RateCurve
from perf.engine_proc import fetch_stats
from perf.fleet import FleetSpec
from perf.loadgen import LoadGenerator

__all__ = ["measure_grpc_ceiling"]

log = structlog.get_logger()

STALL_S = 15.0
WARMUP_S = 1.0
"""Acks of the first second are left out: streams are still filling."""


def _wait_listening(address: str, timeout_s: float = 30.0) -> None:
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    finally:
        channel.close()


def _wait_streams(load: LoadGenerator, address: str, wanted: int) -> int:
    # Until the stub holds every stream, or its count stops growing.
    best, best_at = 0, time.monotonic()
    while time.monotonic() - best_at < STALL_S:
        load.check_alive()
        load.poll()
        try:
            held = fetch_stats(address, timeout_s=3.0).open_streams
        except grpc.RpcError:
            held = 0
        if load.all_connected and held >= wanted:
            return held
        if held > best:
            best, best_at = held, time.monotonic()
        time.sleep(0.5)
    return best


def measure_grpc_ceiling(
    template: FleetSpec,
    devices: list[tuple[str, str]],
    *,
    port: int,
    procs: int,
    seconds: float,
    rate_per_s: float,
    out_dir: Path,
) -> dict[str, Any]:
    """Offer ``rate_per_s`` to the stub for ``seconds``; acks per second.

    Args:
        template: the engine run's fleet settings (mix, window, bad share).
        devices: the devices to connect (each its own stream).
        port: where the stub listens.
        procs: load processes.
        seconds: the measured window.
        rate_per_s: offered rate, meant to exceed what the stub can do.
        out_dir: where the fleets write their results.
    """
    address = f"127.0.0.1:{port}"
    stub = subprocess.Popen(
        [sys.executable, "-m", "perf.stub_server", f"--port={port}"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = dataclasses.replace(
        template,
        address=address,
        seconds=seconds,
        curve=RateCurve(rate_per_s, seconds),
        burst=None,
        offline_share=0.0,
        heartbeat_s=0.0,
        settle=False,
        drain_s=5.0,
    )
    load = LoadGenerator(spec, devices, len(devices), procs, out_dir)
    try:
        _wait_listening(address)
        load.start()
        held = _wait_streams(load, address, len(devices))
        start = load.go()
        result = load.finish(timeout_s=seconds + 120)
    finally:
        load.kill()
        stub.terminate()
        try:
            stub.wait(15)
        except subprocess.TimeoutExpired:
            stub.kill()
    inside = (result.ack_t >= start + WARMUP_S) & (result.ack_t < start + seconds)
    per_s = float(np.count_nonzero(inside)) / max(seconds - WARMUP_S, 1e-9)
    log.info("grpc_ceiling", per_s=round(per_s), devices=len(devices))
    return {
        "per_s": per_s,
        "offered_per_s": rate_per_s,
        "devices": len(devices),
        "streams_held": held,
        "seconds": seconds,
        "load_cpu_s": result.cpu_s,
    }
