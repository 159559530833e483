"""The local stack behind ``sieve up`` and ``sieve down`` on one machine.

``up`` starts, in order and each only if not already running: the Cassandra
node, the schema migrations, a Ray head node, a gateway process, and a small
simulated load. Each process it starts is recorded by a pid file under
``var/run`` so ``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.config import Settings
from engine.exceptions import IngestError
from engine.localstore import local_node
from engine.stack import prepare_store

__all__ = ["DevStack", "LoadOptions"]

log = structlog.get_logger()

RAY_PORT = 6379
GATEWAY_READY_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The built-in load ``sieve up`` starts."""

    devices: int = 300
    person_interval_s: float = 5.0
    seconds: float = 86_400.0


class DevStack:
    """Starts and stops the local stack; every step is idempotent.

    Args:
        settings: engine settings (paths, ports).
        root: the checkout (holds ``cluster/`` and ``var/``).
    """

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.node = local_node(settings)
        self.run_dir = settings.var_dir / "run"
        self.log_dir = settings.var_dir / "log"

    def up(self, *, hosts: int, load: LoadOptions | None) -> None:
        """Bring every part up; parts already running are left as they are."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.node.fetch()
        self.node.start()
        prepare_store(self.settings)
        self._start_ray()
        # "auto" finds the head this machine runs, and the token it wrote.
        env = {"SIEVE_RAY_ADDRESS": "auto"}
        self._spawn("gateway", ["gateway", "--hosts", str(hosts)], env)
        self._wait_gateway()
        if load is not None:
            self._spawn(
                "load",
                [
                    "simulate",
                    "--devices",
                    str(load.devices),
                    "--interval-s",
                    str(load.person_interval_s),
                    "--seconds",
                    str(load.seconds),
                ],
                {},
            )

    def down(self) -> None:
        """Stop the load, the gateway, Ray and the store node, in that order."""
        for name in ("load", "gateway"):
            self._stop_process(name)
        marker = self.run_dir / "ray.started"
        if marker.exists():
            # TODO: --force ends every Ray process of this user on the
            # machine, also other clusters than the one `up` started.
            subprocess.run(
                [str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                check=False,
                capture_output=True,
            )
            marker.unlink()
            log.info("ray_stopped")
        self.node.stop()

    def _start_ray(self) -> None:
        marker = self.run_dir / "ray.started"
        if marker.exists():
            return
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={RAY_PORT}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise IngestError("ray head did not start", output=result.stderr[-2000:])
        marker.write_text(str(time.time()))
        log.info("ray_started", port=RAY_PORT)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        pid_file = self.run_dir / f"{name}.pid"
        if _alive(pid_file):
            return
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "engine", *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
        pid_file.write_text(str(process.pid))
        log.info("process_started", process=name, pid=process.pid, log=str(log_path))

    def _wait_gateway(self) -> None:
        deadline = time.monotonic() + GATEWAY_READY_TIMEOUT_S
        address = self.settings.gateway_address
        while time.monotonic() < deadline:
            if not _alive(self.run_dir / "gateway.pid"):
                raise IngestError(
                    "gateway exited during start",
                    log=str(self.log_dir / "gateway.log"),
                )
            try:
                with grpc.insecure_channel(address) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=2
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(1)
        raise IngestError("gateway not serving in time", address=address)

    def _stop_process(self, name: str, timeout_s: float = 30.0) -> None:
        pid_file = self.run_dir / f"{name}.pid"
        if not _alive(pid_file):
            pid_file.unlink(missing_ok=True)
            return
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        log.info("process_stopped", process=name, pid=pid)


def _alive(pid_file: Path) -> bool:
    try:
        return _pid_alive(int(pid_file.read_text()))
    except (FileNotFoundError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
