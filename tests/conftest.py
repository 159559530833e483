"""Fixtures that start real services: the Cassandra node, Ray and a gateway.

Nothing here is mocked. The store node is started once per session and left
running (later runs reuse it); each test module that needs the store gets its
own keyspace, so modules cannot see each other's rows.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from engine.config import REPO_ROOT, Settings
from engine.localstore import LocalCassandraNode, local_node
from engine.logs import configure_logging
from engine.pii import Keyring, PiiCipher
from engine.stack import GatewayStack, prepare_store, start_gateway
from engine.store import CqlStore

configure_logging("WARNING")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def cassandra_node() -> LocalCassandraNode:
    """The real local Cassandra node, fetched and started if needed."""
    node = local_node(Settings.from_env())
    node.fetch()
    node.start()
    return node


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh keys file for this test session."""
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    Keyring.load(path, create=True)
    return path


@pytest.fixture(scope="module")
def settings(cassandra_node: LocalCassandraNode, keys_file: Path) -> Settings:
    """Settings with a keyspace of this module's own, migrated."""
    keyspace = f"sieve_test_{uuid.uuid4().hex[:10]}"
    result = Settings.from_env(
        None,
        cql_keyspace=keyspace,
        keys_file=keys_file,
        gateway_port=free_port(),
        var_dir=REPO_ROOT / "var",
    )
    prepare_store(result)
    return result


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[CqlStore]:
    """A connected store on the module's keyspace."""
    result = CqlStore(settings)
    result.connect()
    yield result
    result.close()


@pytest.fixture(scope="module")
def cipher(keys_file: Path) -> PiiCipher:
    """The cipher the shards use in this session."""
    return PiiCipher(Keyring.load(keys_file))


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Cluster]:
    """A two-node Ray cluster on this machine, for the whole session.

    Two raylets rather than one so shard placement, node loss and cross-node
    calls are exercised the way a real cluster exercises them.
    """
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        namespace=f"sieve-test-{uuid.uuid4().hex[:6]}",
        logging_level="WARNING",
    )
    yield cluster
    ray.shutdown()
    cluster.shutdown()


class GatewayThread:
    """Runs a gateway stack on its own event loop in a background thread."""

    def __init__(self, settings: Settings, num_hosts: int) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.stack: GatewayStack = self.call(
            start_gateway(settings, num_hosts=num_hosts)
        )

    @property
    def address(self) -> str:
        """Where devices dial."""
        return self.settings.gateway_address

    def call(self, coroutine: Any, timeout_s: float = 120) -> Any:
        """Run a coroutine on the gateway's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout_s)

    def close(self) -> None:
        """Stop the server and the loop; kill the shard hosts."""
        self.call(self.stack.stop(drain_s=0.5))
        for handle in self.stack.hosts:
            ray.kill(handle)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def gateway(settings: Settings, ray_local: Cluster) -> Iterator[GatewayThread]:
    """A real gateway with Ray shard hosts, on the module's keyspace."""
    running = GatewayThread(settings, num_hosts=2)
    yield running
    running.close()
