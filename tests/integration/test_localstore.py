"""Integration tests for the local Cassandra 5.0 node: a real JVM, nothing mocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy

from engine.config import Settings
from engine.localstore import LocalCassandraNode, local_node

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYSPACE = "sieve_localstore_test"


@pytest.fixture
def node() -> Iterator[LocalCassandraNode]:
    """A node handle for this checkout; the node is left as running as it was found."""
    handle = local_node(Settings.from_env())
    was_running = handle.status().running
    try:
        yield handle
    finally:
        if was_running:
            handle.start()  # the session's cassandra_node fixture may still need it
        else:
            handle.stop()


def _cql_round_trip(node: LocalCassandraNode) -> list[tuple[str, int]]:
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
        request_timeout=30,
    )
    cluster = Cluster(
        contact_points=[node.host],
        port=node.port,
        protocol_version=4,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v int)"
        )
        insert = session.prepare(f"INSERT INTO {KEYSPACE}.kv (k, v) VALUES (?, ?)")
        for key, value in (("alpha", 1), ("beta", 2)):
            session.execute(insert, (key, value))
        rows = session.execute(f"SELECT k, v FROM {KEYSPACE}.kv")
        result = sorted((row.k, row.v) for row in rows)
        session.execute(f"DROP KEYSPACE {KEYSPACE}")
        return result
    finally:
        cluster.shutdown()


@pytest.mark.integration
def test_start_round_trip_stop(node: LocalCassandraNode) -> None:
    """A started node reports 5.0, stores and returns rows over CQL, then stops."""
    node.start()
    running = node.status()
    assert running.running
    assert running.pid is not None
    assert running.release_version is not None
    assert running.release_version.startswith("5.0")
    assert running.data_dir == REPO_ROOT / "var" / "cassandra" / "data"

    assert _cql_round_trip(node) == [("alpha", 1), ("beta", 2)]

    node.stop()
    stopped = node.status()
    assert not stopped.running
    assert stopped.pid is None
    assert stopped.release_version is None
    assert not node.pid_file.exists()


@pytest.mark.integration
def test_start_is_idempotent(node: LocalCassandraNode) -> None:
    """Starting a running node, even from a second handle, keeps the same process."""
    node.start()
    first = node.status()
    node.start()
    local_node(Settings.from_env()).start()
    second = node.status()
    assert first.running and second.running
    assert first.pid == second.pid
    node.stop()
    node.stop()
    assert not node.status().running
