"""The gateway's view of the shard hosts on Ray: create, find and call them.

:class:`RayShardPool` implements :class:`~engine.routing.ShardPool`. A call to a
host that died is retried, with the same batch, until the host is back or
``shard_call_timeout_s`` runs out; the same batch keeps the same attempt ids,
so a batch that was in fact written before the death is answered STORED,
not stored twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import ray
import structlog
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from actors.shard_host import ShardHostActor, shard_host_name
from engine.config import Settings
from engine.exceptions import (
    ConfigError,
    ShardUnavailable,
    StoreError,
    StoreUnavailable,
)
from engine.journey import Step, StepAnswer
from engine.registration import ShardAnswer, decode_answer
from engine.routing import DistrictRouter, ShardItem

__all__ = ["RayShardPool", "start_shard_hosts"]

log = structlog.get_logger()

SHARD_HOST_CPUS = 0.25
"""Ray CPU reservation per host: hosts wait on the store most of the time, so
reserving a whole core each would leave small machines unable to place them."""

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0


def start_shard_hosts(
    settings: Settings, router: DistrictRouter, *, detached: bool = False
) -> list[Any]:
    """Create the shard host actors, or find them if another gateway did.

    Args:
        settings: passed to every host.
        router: decides which shards each host serves.
        detached: keep the hosts alive after this process exits (several
            gateway processes sharing one Ray cluster).

    Returns:
        Actor handles by host index, each already answering.
    """
    handles = []
    for index in range(router.num_hosts):
        options: dict[str, Any] = {
            "name": shard_host_name(index),
            "namespace": settings.ray_namespace,
            "get_if_exists": True,
            "num_cpus": SHARD_HOST_CPUS,
            # Spread hosts over the cluster's nodes so one node's loss takes
            # as few shards as possible.
            "scheduling_strategy": "SPREAD",
        }
        if detached:
            options["lifetime"] = "detached"
        actor_class: Any = ShardHostActor
        handles.append(
            actor_class.options(**options).remote(
                index, router.shards_of_host(index), settings
            )
        )
    layouts = ray.get([handle.layout.remote() for handle in handles])
    for index, (keyspace, shard_ids) in enumerate(layouts):
        expected = sorted(router.shards_of_host(index))
        if keyspace != settings.cql_keyspace or shard_ids != expected:
            # get_if_exists returned a host made by an earlier gateway with
            # another layout; serving with it would misroute registrations.
            raise ConfigError(
                "a running shard host has another layout; stop the old hosts "
                "(ray stop, or sieve down) or start every gateway with the same "
                "--hosts, city file and keyspace",
                host=index,
                keyspace=keyspace,
                shards=len(shard_ids),
                expected_shards=len(expected),
            )
    log.info("shard_hosts_ready", hosts=len(handles), shards=len(router.shard_ids))
    return handles


class RayShardPool:
    """Sends batches to the Ray shard hosts.

    Args:
        hosts: handles from :func:`start_shard_hosts`.
        call_timeout_s: longest time one batch may take, restarts included.
    """

    def __init__(self, hosts: Sequence[Any], call_timeout_s: float) -> None:
        self._hosts = list(hosts)
        self._timeout_s = call_timeout_s
        self.num_retries = 0

    async def write(self, host: int, batch: Sequence[ShardItem]) -> list[ShardAnswer]:
        """Store a batch on a shard host, retrying through host restarts.

        Raises:
            StoreUnavailable: the host reached the store, which did not take it.
            ShardUnavailable: the host did not answer within the timeout.
        """
        values = await self._call(host, "write_batch", list(batch))
        return [decode_answer(value) for value in values]

    async def apply(
        self, host: int, shard_id: str, steps: Sequence[Step]
    ) -> list[list[StepAnswer]]:
        """Apply journey steps on a shard host (same retries as :meth:`write`)."""
        result: list[list[StepAnswer]] = await self._call(
            host, "journey", shard_id, list(steps)
        )
        return result

    async def _call(self, host: int, method: str, *args: Any) -> Any:
        # Safe to resend after a host restart: every shard call is idempotent.
        handle = self._hosts[host]
        deadline = time.monotonic() + self._timeout_s
        delay_s = _RETRY_FIRST_S
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise ShardUnavailable("shard host did not answer in time", host=host)
            try:
                ref = getattr(handle, method).remote(*args)
                return await asyncio.wait_for(ref, timeout=remaining_s)
            except RayTaskError as exc:
                raise _store_error(exc, host) from exc
            except (RayActorError, ActorUnavailableError) as exc:
                self.num_retries += 1
                log.warning(
                    "shard_call_retry",
                    host=host,
                    error=type(exc).__name__,
                    retry_in_ms=int(delay_s * 1000),
                )
            except TimeoutError:
                raise ShardUnavailable(
                    "shard host did not answer in time", host=host
                ) from None
            await asyncio.sleep(min(delay_s, max(deadline - time.monotonic(), 0)))
            delay_s = min(delay_s * 2, _RETRY_MAX_S)


def _store_error(exc: RayTaskError, host: int) -> Exception:
    cause = exc.cause
    if isinstance(cause, StoreUnavailable):
        return StoreUnavailable("store did not take the batch", host=host)
    if isinstance(cause, StoreError):
        return StoreError("store refused the batch", host=host)
    return ShardUnavailable(
        "shard failed on the batch", host=host, error=type(cause).__name__
    )
