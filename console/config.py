"""Console settings: ``SIEVE_CONSOLE_*`` variables next to the engine's.

The engine's own :class:`~engine.config.Settings` (gateway address, store,
keyspace, city file) are read as usual; these add what only the console needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.config import REPO_ROOT
from engine.exceptions import ConfigError

__all__ = ["ConsoleSettings"]

_PREFIX = "SIEVE_CONSOLE_"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """What the console needs beyond the engine settings."""

    host: str = "127.0.0.1"
    port: int = 8080
    users_file: Path = REPO_ROOT / "console" / "users.example.toml"
    """TOML file of users, roles and salted scrypt password hashes."""

    storage_secret: str = ""
    """Signs the session cookie; empty makes a random one per process."""

    round: int = 1
    """Screening round shown (the store's per-minute rows are per round)."""

    round_start_ms: int = 0
    """Start of the round (epoch ms); 0 means its first minute with
    registrations (the ``round_minutes`` index), else the gateway's start."""

    previous_round_start_ms: int = 0
    """Start of the previous round (epoch ms) for the overlay; 0 means its
    first minute with registrations."""

    gateways: tuple[str, ...] = ()
    """``host:port`` of every gateway, comma-separated in the variable;
    empty means the engine's own gateway address."""

    milestones: tuple[int, ...] = (1_000_000, 5_000_000, 10_000_000)
    """Round totals whose time (or ETA) the city page shows."""

    refresh_s: float = 2.0
    """How often the console polls the gateway and the store."""

    chart_minutes: int = 60
    """Minutes the city chart and the district sparklines show."""

    history_minutes: int = 12 * 60
    """Most minutes summed for totals, however early the round started."""

    settle_s: float = 20.0
    """A minute's store count is cached once this long past its end (late
    writes of that minute land within the shard call timeout)."""

    recheck_s: float = 300.0
    """Settled minutes of journey stages are read again this often: seals and
    lab results are counted in the minute the device stamped, which may be
    written long after it ended."""

    coverage_s: float = 15.0
    """How often sampled people (participation bitmaps) are re-read; the shard
    hosts flush them every 5 s."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleSettings:
        """Read ``SIEVE_CONSOLE_<FIELD>`` variables over the defaults.

        Raises:
            ConfigError: a variable does not parse as its field's type.
        """
        env = os.environ if environ is None else environ
        casts: dict[str, Callable[[str], object]] = {
            "host": str,
            "port": int,
            "users_file": Path,
            "storage_secret": str,
            "round": int,
            "round_start_ms": int,
            "previous_round_start_ms": int,
            "gateways": _addresses,
            "milestones": _counts,
            "refresh_s": float,
            "chart_minutes": int,
            "history_minutes": int,
            "settle_s": float,
            "recheck_s": float,
            "coverage_s": float,
        }
        values: dict[str, object] = {}
        for name, cast in casts.items():
            raw = env.get(_PREFIX + name.upper())
            if raw is None:
                continue
            try:
                values[name] = cast(raw)
            except ValueError as exc:
                raise ConfigError(
                    "setting does not parse",
                    variable=_PREFIX + name.upper(),
                    value=raw,
                    error=str(exc),
                ) from exc
        return cls(**values)  # type: ignore[arg-type]


def _addresses(raw: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"not host:port: {address!r}")
    return addresses


def _counts(raw: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in raw.split(",") if part.strip())
    if any(count <= 0 for count in counts):
        raise ValueError(f"milestones must be positive: {raw!r}")
    return counts
