"""The engine under test in its own process: local Ray, shard hosts and gateway.

The bench runs the gateway in a child process (``python -m perf.engine_proc``)
rather than a thread, so its CPU is counted apart from the load generator's
and ``py-spy`` can attach to it. The child migrates its own keyspace on the
running store, starts a private local Ray instance, starts the stack with
:func:`engine.stack.start_gateway`, writes a ready file naming its processes,
and serves until SIGTERM. ``SIEVE_*`` variables reach it unchanged, so engine
settings can be varied per run (``SIEVE_BATCH_WAIT_MS=5``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from engine.config import REPO_ROOT, Settings
from sieve.v1 import operations_pb2, operations_pb2_grpc

__all__ = ["EngineInfo", "EngineProcess", "fetch_stats", "store_pid"]

log = structlog.get_logger()

READY_TIMEOUT_S = 300.0
PATCH_VARIABLE = "SIEVE_BENCH_PATCHES"
"""Comma-separated experiments of :mod:`perf.experiments` to apply in the child."""
PYINSTRUMENT_VARIABLE = "SIEVE_BENCH_PYINSTRUMENT"
"""A file path: profile the gateway's event loop with pyinstrument into it."""
OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Ray's shared-memory store; batches travel inline, so a small one does."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Where the started engine listens and which processes are its parts."""

    address: str
    gateway_pid: int
    host_pids: tuple[int, ...]
    settings: dict[str, Any]


def store_pid() -> int | None:
    """Pid of the local Cassandra node, from its pid file; None if not running."""
    pid_file = REPO_ROOT / "var" / "cassandra" / "cassandra.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def fetch_stats(
    address: str, timeout_s: float = 5.0
) -> operations_pb2.IngestStatsResponse:
    """The gateway's counters (open streams, in flight, backpressure...)."""
    with grpc.insecure_channel(address) as channel:
        make_stub = operations_pb2_grpc.OperationsStub
        stub = make_stub(channel)  # type: ignore[no-untyped-call]
        reply: operations_pb2.IngestStatsResponse = stub.GetIngestStats(
            operations_pb2.IngestStatsRequest(minutes=1), timeout=timeout_s
        )
        return reply


class EngineProcess:
    """Starts and stops one engine child process.

    Args:
        keyspace: the run's own keyspace (created and migrated by the child).
        port: gateway port on 127.0.0.1.
        hosts: shard host actors.
        run_dir: where the child's log and ready file go.
    """

    def __init__(self, keyspace: str, port: int, hosts: int, run_dir: Path) -> None:
        self.keyspace = keyspace
        self.port = port
        self.hosts = hosts
        self.run_dir = run_dir
        self.log_path = run_dir / "engine.log"
        self._ready_path = run_dir / "engine.ready.json"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the child, None before start."""
        return None if self._process is None else self._process.pid

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> EngineInfo:
        """Launch the child and wait until its gateway serves.

        Raises:
            RuntimeError: the child exited or did not get ready in time.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._ready_path.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "perf.engine_proc",
            f"--keyspace={self.keyspace}",
            f"--port={self.port}",
            f"--hosts={self.hosts}",
            f"--ready={self._ready_path}",
        ]
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"engine exited with {self._process.returncode}; "
                    f"see {self.log_path}"
                )
            if self._ready_path.exists():
                raw = json.loads(self._ready_path.read_text())
                info = EngineInfo(
                    address=raw["address"],
                    gateway_pid=raw["gateway_pid"],
                    host_pids=tuple(raw["host_pids"]),
                    settings=raw["settings"],
                )
                log.info("engine_ready", pid=info.gateway_pid, hosts=info.host_pids)
                return info
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"engine not ready in {timeout_s} s; see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM the child (it drains and stops Ray); SIGKILL its group late.

        Returns:
            The engine's closing counters (batches per shard host and per
            shard), or an empty dict if it did not write them.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return {}
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("engine_stop_timeout", pid=process.pid, timeout_s=timeout_s)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        stats_path = self.run_dir / "engine.stats.json"
        if not stats_path.exists():
            return {}
        return dict(json.loads(stats_path.read_text()))


async def _serve(settings: Settings, hosts: int, ready: Path) -> None:
    import ray

    from engine.stack import start_gateway

    stack = await start_gateway(settings, num_hosts=hosts)
    host_pids = await asyncio.gather(*(h.pid.remote() for h in stack.hosts))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    shown = {
        name: getattr(settings, name)
        for name in (
            "batch_max_records",
            "batch_wait_ms",
            "shard_max_inflight_batches",
            "max_inflight_records",
            "cql_concurrency",
            "shards_per_district",
        )
    }
    partial = ready.with_suffix(".tmp")
    partial.write_text(
        json.dumps(
            {
                "address": settings.gateway_address,
                "gateway_pid": os.getpid(),
                "host_pids": list(host_pids),
                "settings": shown,
            }
        )
    )
    partial.rename(ready)
    await stopping.wait()
    await stack.stop(drain_s=0.5)
    shard_stats = await asyncio.gather(*(h.stats.remote() for h in stack.hosts))
    batchers = [
        {"host": b.target, "batches": b.num_batches, "records": b.num_records}
        for b in stack.gateway.batchers()
    ]
    stats_path = ready.with_name("engine.stats.json")
    stats_path.write_text(
        json.dumps({"gateway_batchers": batchers, "shards": shard_stats}, indent=1)
    )
    for handle in stack.hosts:
        ray.kill(handle)


def main() -> None:
    """Entry point of the engine child process."""
    import ray

    from engine.logs import configure_logging
    from engine.stack import prepare_store

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keyspace", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    configure_logging("WARNING")
    patches = os.environ.get(PATCH_VARIABLE, "")
    if patches:
        from perf.experiments import apply_patches

        apply_patches(patches)
    settings = Settings.from_env(
        cql_keyspace=args.keyspace, gateway_port=args.port, gateway_host="127.0.0.1"
    )
    prepare_store(settings)
    # "local": a private instance even when another Ray runs on this machine.
    ray.init(
        address="local",
        namespace=f"sieve-bench-{uuid.uuid4().hex[:8]}",
        include_dashboard=False,
        logging_level=logging.WARNING,
        object_store_memory=OBJECT_STORE_BYTES,
    )
    try:
        profile_out = os.environ.get(PYINSTRUMENT_VARIABLE, "")
        if profile_out:
            _run_profiled(settings, args.hosts, args.ready, Path(profile_out))
        else:
            asyncio.run(_serve(settings, args.hosts, args.ready))
    finally:
        ray.shutdown()


def _run_profiled(settings: Settings, hosts: int, ready: Path, out: Path) -> None:
    # pyinstrument samples the gateway's loop thread (interval 5 ms) and, in
    # async mode, charges awaited time to the awaiting coroutine.
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005, async_mode="enabled")
    profiler.start()
    try:
        asyncio.run(_serve(settings, hosts, ready))
    finally:
        profiler.stop()
        out.write_text(profiler.output_text(unicode=True, show_all=False))


if __name__ == "__main__":
    main()
