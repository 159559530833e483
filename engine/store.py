"""The connection to the CQL store: sessions, execution profiles and async calls.

One :class:`CqlStore` per process holds a driver ``Cluster`` pinned to
protocol v4 with token-aware, DC-aware routing, so each statement goes straight
to a replica of its partition in the local datacenter. Requests are grouped
into named execution profiles:

* ``ingest``: LOCAL_QUORUM writes and reads on the ingest path, short timeout;
  a write acknowledged under it is on a quorum of the local replicas' commit
  logs.
* ``lookup``: LOCAL_ONE reads for resident and console queries.
* ``admin``: schema changes and bulk reads, long timeout.

:meth:`CqlStore.execute` bridges the driver's callback futures into asyncio so
shards can keep many statements in flight without a thread each.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog
from cassandra import ConsistencyLevel, DriverException, RequestValidationException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import PreparedStatement, tuple_factory

from engine.config import Settings
from engine.exceptions import ConfigError, StoreError, StoreUnavailable
from engine.latency import LatencyRecorder

__all__ = ["PROTOCOL_VERSION", "CqlStore"]

log = structlog.get_logger()

PROTOCOL_VERSION = 4
"""Pinned: both ScyllaDB and Cassandra 5.0 speak it fully."""

T = TypeVar("T")

RECONNECT_MAX_S = 2.0
"""Longest wait between reconnection attempts to a store node that went down;
short so ingest resumes within seconds of the store coming back."""


def _routing_key(statement: Any) -> bytes | None:
    key: bytes | None = statement.routing_key
    return key


class CqlStore:
    """A connected session to one keyspace, with prepared statements cached.

    Args:
        settings: contact points, keyspace, local datacenter and timeouts.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyspace = settings.cql_keyspace
        routing = TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=settings.cql_local_dc)
        )
        profiles = {
            "ingest": ExecutionProfile(
                load_balancing_policy=routing,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                request_timeout=settings.cql_write_timeout_s,
            ),
            # Plain tuples: the driver's default builds a namedtuple class
            # per result, a measurable share of the hottest read.
            "ingest_tuples": ExecutionProfile(
                load_balancing_policy=routing,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                request_timeout=settings.cql_write_timeout_s,
                row_factory=tuple_factory,
            ),
            "lookup": ExecutionProfile(
                load_balancing_policy=routing,
                consistency_level=ConsistencyLevel.LOCAL_ONE,
                request_timeout=settings.cql_read_timeout_s,
            ),
            "admin": ExecutionProfile(
                load_balancing_policy=routing,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                request_timeout=60.0,
            ),
        }
        profiles[EXEC_PROFILE_DEFAULT] = profiles["admin"]
        self._cluster = Cluster(
            auth_provider=_auth_provider(settings),
            ssl_context=_tls_context(settings),
            contact_points=list(settings.cql_hosts),
            port=settings.cql_port,
            protocol_version=PROTOCOL_VERSION,
            execution_profiles=profiles,
            reconnection_policy=ExponentialReconnectionPolicy(0.2, RECONNECT_MAX_S),
            connect_timeout=5,
        )
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}
        self.latency = LatencyRecorder()
        """Time of every :meth:`execute` call, per execution profile."""

    def connect(self) -> Session:
        """Open the session (idempotent); keyspace selection is per statement.

        Raises:
            StoreUnavailable: no contact point answered.
        """
        if self._session is None:
            try:
                self._session = self._cluster.connect()
            except NoHostAvailable as exc:
                raise StoreUnavailable(
                    "no store node answered", hosts=",".join(self.settings.cql_hosts)
                ) from exc
            log.info(
                "store_connected",
                hosts=",".join(self.settings.cql_hosts),
                keyspace=self.keyspace,
            )
        return self._session

    @property
    def session(self) -> Session:
        """The open session; call :meth:`connect` first."""
        if self._session is None:
            return self.connect()
        return self._session

    def prepare(self, cql: str, *, idempotent: bool = True) -> PreparedStatement:
        """Prepare a statement once per process; ``{ks}`` names the keyspace."""
        text = cql.replace("{ks}", self.keyspace)
        statement = self._prepared.get(text)
        if statement is None:
            statement = self.session.prepare(text)
            statement.is_idempotent = idempotent
            self._prepared[text] = statement
        return statement

    def execute_sync(
        self, cql: str, params: Sequence[Any] | None = None, *, profile: str = "admin"
    ) -> list[Any]:
        """Run a statement and return all rows; for set-up and tooling only."""
        try:
            return list(
                self.session.execute(
                    cql.replace("{ks}", self.keyspace),
                    params,
                    execution_profile=profile,
                )
            )
        except NoHostAvailable as exc:
            raise StoreUnavailable("no store node answered") from exc
        except DriverException as exc:
            raise StoreError("statement failed", error=str(exc)) from exc

    def group_by_replica(
        self,
        items: Iterable[T],
        *,
        chunk: int,
        routing_key: Callable[[T], bytes | None] = _routing_key,
    ) -> list[list[T]]:
        """Split items into groups whose partitions share a primary replica.

        Each group is at most ``chunk`` long. Sending one request per group
        (an unlogged batch, an IN query) lets the coordinator, itself that
        replica by token-aware routing, serve every row locally.

        Args:
            items: bound statements, or anything ``routing_key`` understands.
            chunk: largest group.
            routing_key: the serialised partition key of an item.
        """
        metadata = self.session.cluster.metadata
        groups: dict[Any, list[T]] = {}
        for item in items:
            key = routing_key(item)
            replicas = metadata.get_replicas(self.keyspace, key) if key else ()
            groups.setdefault(replicas[0] if replicas else None, []).append(item)
        return [
            group[start : start + chunk]
            for group in groups.values()
            for start in range(0, len(group), chunk)
        ]

    async def execute(
        self, statement: Any, params: Sequence[Any] | None = None, *, profile: str
    ) -> list[Any]:
        """Run one statement without blocking the event loop.

        Returns:
            The rows of the first page (enough for every ingest-path query).

        Raises:
            StoreUnavailable: no replica could serve it, or it timed out.
            StoreError: the store refused it for another reason.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        histogram = self.latency.histogram(profile)
        started = time.perf_counter()
        response: ResponseFuture = self.session.execute_async(
            statement, params, execution_profile=profile
        )

        def on_rows(rows: Any) -> None:
            loop.call_soon_threadsafe(_resolve, future, list(rows or ()))

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_fail, future, exc)

        response.add_callbacks(on_rows, on_error)
        try:
            # Timed from the driver's send to the answer on this loop; failed
            # requests count too, since a store that times out is a slow one.
            try:
                rows = await future
            except Exception:
                histogram.record_error((time.perf_counter() - started) * 1000)
                raise
            histogram.record((time.perf_counter() - started) * 1000)
            return rows
        except RequestValidationException as exc:
            raise StoreError("store refused the statement", error=str(exc)) from exc
        except NoHostAvailable as exc:
            raise StoreUnavailable("no store node answered") from exc
        except Exception as exc:
            # Timeouts, overload and broken connections: the statements on
            # this path are idempotent upserts, so the caller may retry.
            raise StoreUnavailable(
                "store did not take the request", error=type(exc).__name__
            ) from exc

    def close(self) -> None:
        """Close every connection; the store object cannot be reused."""
        self._cluster.shutdown()
        self._session = None


def _auth_provider(settings: Settings) -> PlainTextAuthProvider | None:
    if not settings.cql_username:
        return None
    if settings.cql_password_file is None:
        raise ConfigError(
            "a CQL username needs a password file", setting="cql_password_file"
        )
    password = settings.cql_password_file.read_text(encoding="utf-8").strip()
    return PlainTextAuthProvider(settings.cql_username, password)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.cql_ca_file is None:
        return None
    context = ssl.create_default_context(cafile=str(settings.cql_ca_file))
    # Contact points are often addresses, which store certificates rarely
    # name; the chain is still verified against the CA.
    context.check_hostname = False
    return context


def _resolve(future: asyncio.Future[list[Any]], rows: list[Any]) -> None:
    if not future.done():
        future.set_result(rows)


def _fail(future: asyncio.Future[list[Any]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
