"""Owns the local single-node Cassandra 5.0 dev/CI store: jars, config, process."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

import structlog
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy

from engine.config import REPO_ROOT, Settings
from engine.exceptions import LocalStoreError

__all__ = ["LocalCassandraNode", "NodeStatus", "local_node"]

log = structlog.get_logger(__name__)

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
_DIRS = ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers", "logs")
_POLL_S = 0.5
_TAIL_LINES = 40


@dataclass(frozen=True)
class NodeStatus:
    """A snapshot of the local node: ``release_version`` is None while CQL is down."""

    running: bool
    pid: int | None
    release_version: str | None
    data_dir: Path


class LocalCassandraNode:
    """One Cassandra 5.0 node run from Maven Central jars on OpenJDK 17.

    State lives under ``<root>/var/cassandra``: jars, data, commit log, logs, the
    rendered yaml, the pid file and a class-data sharing archive (written at the
    first clean stop; it cuts about a second off every later start).

    Args:
        root: the repository root (holds ``cluster/cassandra``).
        java_home: an OpenJDK 17 home; looked up when None.
        host: the address CQL and internode traffic listen on.
        port: the CQL port.
        storage_port: the internode port; ``storage_port + 1`` is the TLS one.
    """

    def __init__(
        self,
        root: Path,
        *,
        java_home: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 9042,
        storage_port: int = 7000,
    ) -> None:
        """Describe the node; nothing is fetched or started yet."""
        self.root = Path(root).resolve()
        self.host, self.port, self.storage_port = host, port, storage_port
        self._java_home = java_home
        self.conf_dir = self.root / "cluster" / "cassandra"
        self.var_dir = self.root / "var" / "cassandra"
        self.lib_dir = self.var_dir / "lib"
        self.data_dir = self.var_dir / "data"
        self.log_dir = self.var_dir / "logs"
        self.pid_file = self.var_dir / "cassandra.pid"
        self.yaml_file = self.var_dir / "cassandra.yaml"
        self._proc: subprocess.Popen[bytes] | None = None

    def fetch(self) -> None:
        """Copy the jars from Maven once; a pom-hash marker makes reruns instant.

        Raises:
            LocalStoreError: Maven is missing or the copy failed.
        """
        pom = self.conf_dir / "pom.xml"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        marker = self.lib_dir / ".complete"
        if marker.is_file() and marker.read_text().strip() == digest:
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalStoreError("Maven is needed: apt-get install -y maven")
        partial = self.var_dir / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
        env = {**os.environ, "JAVA_HOME": str(self.find_java17())}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).splitlines()[-_TAIL_LINES:]
            raise LocalStoreError(
                "mvn could not copy the Cassandra jars:\n" + "\n".join(out),
                rc=done.returncode,
            )
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        partial.rename(self.lib_dir)
        marker.write_text(digest + "\n")
        fetch_s = round(time.monotonic() - started, 1)
        log.info("store_jars_fetched", lib_dir=str(self.lib_dir), fetch_s=fetch_s)

    def find_java17(self) -> Path:
        """Return an OpenJDK 17 home: the one given, ``$JAVA_HOME``, or the system's.

        Raises:
            LocalStoreError: no JDK 17 was found (Cassandra 5.0 runs on 11 or 17).
        """
        given = [self._java_home, os.environ.get("JAVA_HOME")]
        candidates = [Path(home) for home in given if home]
        candidates += sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*"))
        for home in candidates:  # every JDK 9+ ships a ``release`` file
            path = home / "release"
            release = path.read_text() if path.is_file() else ""
            if re.search(r'^JAVA_VERSION="17[."]', release, re.MULTILINE):
                return home
        raise LocalStoreError(
            "OpenJDK 17 is needed to run Cassandra 5.0 (newer JDKs cannot): "
            "apt-get install -y openjdk-17-jdk-headless, or set JAVA_HOME to a JDK 17",
            java_home=os.environ.get("JAVA_HOME"),
        )

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the node and wait for CQL; return at once if it already runs.

        Raises:
            LocalStoreError: the port is taken or the node did not come up (a
                node that did not come up in time is stopped again).
        """
        with self._locked():
            self._start(timeout_s)

    def _start(self, timeout_s: float) -> None:
        pid = self._live_pid()
        if pid is not None:
            self.wait_ready(timeout_s)
            log.info("store_already_running", pid=pid, port=self.port)
            return
        if _port_open(self.host, self.port):
            msg = "the CQL port is taken by a process this checkout did not start"
            raise LocalStoreError(msg, host=self.host, port=self.port)
        self.fetch()
        java = self.find_java17() / "bin" / "java"
        self._render_config()
        started = time.monotonic()
        with (self.log_dir / "stdout.log").open("ab") as stdout:
            self._proc = subprocess.Popen(
                [str(java), *self._jvm_args(), MAIN_CLASS],
                cwd=self.var_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        log.info("store_launched", pid=self._proc.pid, java=str(java))
        try:
            self.wait_ready(timeout_s)
        except LocalStoreError:
            self._stop(10.0)
            raise
        start_s = round(time.monotonic() - started, 1)
        log.info("store_started", pid=self._proc.pid, port=self.port, start_s=start_s)

    def wait_ready(self, timeout_s: float) -> str:
        """Block until a CQL query succeeds and return the node's release version.

        Raises:
            LocalStoreError: the process died or time ran out (with the log tail).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            pid = self._live_pid()
            code = self._proc.poll() if self._proc is not None else None
            version, why = self._probe() if pid else (None, f"exited, code {code}")
            if version is not None:
                return version
            if pid is None or time.monotonic() >= deadline:
                tail = self._log_tail()
                msg = f"the store node is not serving CQL ({why}); last log lines:\n"
                raise LocalStoreError(msg + tail, pid=pid, timeout_s=timeout_s)
            time.sleep(_POLL_S)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the node: SIGTERM, then SIGKILL after ``timeout_s``; no-op if down."""
        with self._locked():
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        killed = not self._wait_exit(timeout_s)
        if killed:
            log.warning("store_stop_timeout", pid=pid, timeout_s=timeout_s)
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(10.0)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        archive = self._cds_archive()
        dumped = archive.with_suffix(".tmp")
        if dumped.is_file() and not killed:
            dumped.rename(archive)  # the JVM wrote it completely on a clean exit
        dumped.unlink(missing_ok=True)
        stop_s = round(time.monotonic() - started, 1)
        log.info("store_stopped", pid=pid, killed=killed, stop_s=stop_s)

    def status(self) -> NodeStatus:
        """Report whether the node runs and, if CQL answers, its release version."""
        pid = self._live_pid()
        version = self._probe()[0] if pid is not None else None
        return NodeStatus(pid is not None, pid, version, self.data_dir)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start and stop across processes sharing this checkout."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with (self.var_dir / "node.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _render_config(self) -> None:
        for name in _DIRS:
            (self.var_dir / name).mkdir(parents=True, exist_ok=True)
        template = Template((self.conf_dir / "cassandra.yaml").read_text())
        fields = {"host": self.host, "port": self.port, "var_dir": self.var_dir}
        fields |= {"storage_port": self.storage_port}
        fields |= {"ssl_storage_port": self.storage_port + 1}
        self.yaml_file.write_text(template.substitute(fields))

    def _jvm_args(self) -> list[str]:
        lines = (self.conf_dir / "jvm17.options").read_text().splitlines()
        args = [ln.strip() for ln in lines if ln.strip()[:1] not in ("", "#")]
        jars = sorted(str(jar) for jar in self.lib_dir.glob("*.jar"))
        args += [f"-javaagent:{jar}" for jar in jars if "/jamm-" in jar][-1:]
        archive = self._cds_archive()
        args += ["-XX:+UnlockDiagnosticVMOptions", "-XX:+AllowArchivingWithJavaAgent"]
        if archive.is_file():
            args.append(f"-XX:SharedArchiveFile={archive}")
        else:  # dump one at exit for the next start; stop() keeps it if complete
            for stale in self.var_dir.glob("classes-*"):
                stale.unlink()
            args += [f"-XX:ArchiveClassesAtExit={archive.with_suffix('.tmp')}"]
            args += ["-Xlog:cds=error,cds+dynamic=error"]
        return [
            *args,
            f"-Dcassandra.config={self.yaml_file.as_uri()}",
            f"-Dcassandra.storagedir={self.var_dir}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dcassandra.triggers_dir={self.var_dir / 'triggers'}",
            f"-Dlogback.configurationFile={(self.conf_dir / 'logback.xml').as_uri()}",
            "-Dcassandra-foreground=yes",
            f"-XX:ErrorFile={self.log_dir}/hs_err_%p.log",
            "-cp",
            os.pathsep.join(jars),
        ]

    def _cds_archive(self) -> Path:
        """The class-data archive path, keyed on the JDK, the jars and the flags."""
        java = (self.find_java17() / "bin" / "java").resolve()
        key = hashlib.sha256(f"{java}:{java.stat().st_mtime_ns}".encode())
        for part in (self.lib_dir / ".complete", self.conf_dir / "jvm17.options"):
            key.update(part.read_bytes() if part.is_file() else b"")
        return self.var_dir / f"classes-{key.hexdigest()[:12]}.jsa"

    def _live_pid(self) -> int | None:
        """The node's pid if that process is alive, not a zombie, and ours."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return None
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X") or str(self.yaml_file) not in cmdline:
            return None
        return pid

    def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._live_pid() is not None:  # also reaps our own child
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _probe(self) -> tuple[str | None, str]:
        """(release_version, "") if a CQL query works, else (None, why not)."""
        if not _port_open(self.host, self.port):
            return None, "CQL port not open"
        local_dc = DCAwareRoundRobinPolicy(local_dc="datacenter1")
        profile = ExecutionProfile(load_balancing_policy=local_dc, request_timeout=5)
        cluster = Cluster(
            contact_points=[self.host],
            port=self.port,
            protocol_version=4,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=5,
            control_connection_timeout=5,
            schema_metadata_enabled=False,
            token_metadata_enabled=False,
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return str(row.release_version), ""
        except Exception as exc:  # noqa: BLE001 - any driver error means not ready
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            cluster.shutdown()

    def _log_tail(self) -> str:
        lines: list[str] = []
        for name in ("system.log", "stdout.log"):
            path = self.log_dir / name
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()
                lines += [f"--- {path}", *text[-_TAIL_LINES:]]
        return "\n".join(lines) or f"(no logs under {self.log_dir})"


def _port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def local_node(settings: Settings) -> LocalCassandraNode:
    """The dev/CI node of this checkout, on the ports the settings name."""
    return LocalCassandraNode(
        REPO_ROOT,
        port=settings.cql_port,
        storage_port=settings.local_store_storage_port,
    )
