"""Engine settings: one knob each, with its unit, default and reason.

Every setting can be overridden by an environment variable named ``SIEVE_`` plus
the upper-case field name (``SIEVE_BATCH_WAIT_MS=2``). Values are read once by
:meth:`Settings.from_env` and frozen; a malformed value raises
:class:`~engine.exceptions.ConfigError` naming the variable, the value and the
expected type.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.exceptions import ConfigError

__all__ = ["ENV_PREFIX", "REPO_ROOT", "Settings"]

ENV_PREFIX = "SIEVE_"
REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this engine runs from; dev state lives under its ``var/``."""


def _cast_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _cast_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_CASTS: dict[type | str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _cast_bool,
    "Path": Path,
    "Path | None": Path,
    "tuple[str, ...]": _cast_list,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Engine-wide settings; build with :meth:`from_env`, never mutate."""

    var_dir: Path = REPO_ROOT / "var"
    """Dev state: store node files, keys, pid files and logs."""

    city_config: Path = REPO_ROOT / "config" / "tianjin.toml"
    """The city's districts, sites and devices, read at start."""

    keys_file: Path = REPO_ROOT / "var" / "keys.toml"
    """PII and device-token keys; generated on first dev run, never committed."""

    generate_keys: bool = True
    """Write fresh random keys when the keys file is missing (dev, CI).
    Production sets false, so a missing secret stops the gateway instead of
    sealing data under keys nobody else holds."""

    cql_hosts: tuple[str, ...] = ("127.0.0.1",)
    """Contact points of the CQL store (ScyllaDB in production)."""

    cql_port: int = 9042
    local_store_storage_port: int = 7000
    """Internode port of the local dev/CI Cassandra node (``sieve store up``);
    change it with ``cql_port`` to run a second checkout's node beside one."""

    cql_username: str = ""
    """Role the engine logs in as; empty connects without authentication."""

    cql_password_file: Path | None = None
    """File holding that role's password (a mounted secret, never a variable)."""

    cql_ca_file: Path | None = None
    """CA bundle to verify the store's TLS certificate; unset means plain TCP."""
    cql_keyspace: str = "sieve"
    cql_local_dc: str = "datacenter1"
    """Datacenter this process is in; requests stay in it (LOCAL_QUORUM)."""

    cql_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    """Replication used only when the engine creates the keyspace itself (dev);
    production keyspaces are created by cluster/scylla/keyspace.cql."""

    cql_create_keyspace: bool = True
    """Create the keyspace with ``cql_replication`` if it is missing (dev, CI).
    Production sets this false: SREs create the multi-DC keyspace themselves."""

    cql_write_timeout_s: float = 2.0
    """Per-statement client timeout on the ingest path; past it the batch is
    answered RETRY rather than hanging the device."""

    cql_read_timeout_s: float = 1.0
    cql_concurrency: int = 256
    """Statements one shard keeps in flight to the store at once."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 50051
    gateway_tls_cert_file: Path | None = None
    """PEM certificate chain devices see; with the key file, the port is TLS."""

    gateway_tls_key_file: Path | None = None
    gateway_drain_s: float = 5.0
    """On stop: seconds between reporting NOT_SERVING (so load balancers move
    new streams elsewhere) and closing the port; open streams finish within
    another such period."""

    batch_max_records: int = 512
    """A shard-host batch is sent once it holds this many registrations."""

    batch_wait_ms: float = 10.0
    """...or once its oldest registration has waited this long."""

    shard_max_inflight_batches: int = 4
    """Batches one gateway keeps in flight to one shard host; more wait."""

    max_inflight_records: int = 20_000
    """Registrations one gateway holds unacked; past it devices are pushed back."""

    backpressure_retry_ms: int = 500
    """Retry hint sent with RESOURCE_EXHAUSTED and RETRY acks."""

    shard_call_timeout_s: float = 10.0
    """How long the gateway waits for a shard (including restarts) before it
    answers RETRY; longer than a store write timeout so store errors surface
    as such."""

    shards_per_district: int = 2
    """Default shards for a district that does not set its own count."""

    max_image_bytes: int = 512 * 1024
    """Largest ID-card photo kept with a registration; a phone's card photo
    at OCR-readable quality is 50-200 KiB."""

    ocr_actors: int = 0
    """OCR actors to run (GPU ones where GPUs exist); 0 stores photos but
    verifies none until actors run."""

    ocr_sweep_s: float = 30.0
    """How often each shard host re-submits verifications left pending."""

    ray_address: str = ""
    """Ray cluster to join; empty starts a local one in-process."""

    ray_namespace: str = "sieve"
    max_capture_age_h: float = 72.0
    """Oldest captured_at accepted: devices resend offline backlogs late."""

    max_clock_skew_s: float = 300.0
    """How far a device clock may run ahead of the gateway's."""

    lookup_clients: tuple[str, ...] = ("resident-app", "grid-workers")
    """Systems allowed to call the Residents service (look-ups, corrections);
    each presents the token ``sieve residents token ID`` prints."""

    lookup_rate_per_s: float = 200.0
    """Residents calls per second one client may sustain, per gateway."""

    lookup_burst: int = 400
    """Residents calls one client may make at once after being idle."""

    lookup_max_records: int = 20
    """Most sampling records one look-up returns, newest first."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read every field from ``SIEVE_*`` variables, then apply overrides.

        Args:
            environ: the variables to read; defaults to ``os.environ``.
            **overrides: field values that win over the environment.

        Returns:
            The frozen settings.

        Raises:
            ConfigError: a variable does not parse as its field's type.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = ENV_PREFIX + item.name.upper()
            if name not in env:
                continue
            cast = _CASTS[str(item.type)]
            try:
                values[item.name] = cast(env[name])
            except ValueError as exc:
                raise ConfigError(
                    "setting does not parse",
                    variable=name,
                    value=env[name],
                    expected=str(item.type),
                ) from exc
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigError` for values no deployment can run with."""
        positive = {
            "batch_max_records": self.batch_max_records,
            "shard_max_inflight_batches": self.shard_max_inflight_batches,
            "max_inflight_records": self.max_inflight_records,
            "shards_per_district": self.shards_per_district,
            "cql_concurrency": self.cql_concurrency,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(
                    "setting must be at least 1", setting=name, value=value
                )
        if self.batch_wait_ms < 0:
            raise ConfigError(
                "setting must not be negative",
                setting="batch_wait_ms",
                value=self.batch_wait_ms,
            )
        if not self.cql_hosts:
            raise ConfigError(
                "at least one CQL contact point is needed", setting="cql_hosts"
            )

    @property
    def gateway_address(self) -> str:
        """``host:port`` the gateway listens on and devices dial."""
        return f"{self.gateway_host}:{self.gateway_port}"
