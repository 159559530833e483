"""Console settings: ``SIEVE_CONSOLE_*`` variables next to the engine's.

The engine's own :class:`~engine.config.Settings` (gateway address, store,
keyspace, city file) are read as usual; these add what only the console needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    """Start of the round (epoch ms); 0 means the gateway's start time."""

    refresh_s: float = 2.0
    """How often the console polls the gateway and the store."""

    chart_minutes: int = 60
    """Minutes the city chart and the district sparklines show."""

    history_minutes: int = 12 * 60
    """Most minutes summed for totals, however early the round started."""

    settle_s: float = 20.0
    """A minute's store count is cached once this long past its end (late
    writes of that minute land within the shard call timeout)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleSettings:
        """Read ``SIEVE_CONSOLE_<FIELD>`` variables over the defaults.

        Raises:
            ConfigError: a variable does not parse as its field's type.
        """
        env = os.environ if environ is None else environ
        casts = {
            "host": str,
            "port": int,
            "users_file": Path,
            "storage_secret": str,
            "round": int,
            "round_start_ms": int,
            "refresh_s": float,
            "chart_minutes": int,
            "history_minutes": int,
            "settle_s": float,
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
                ) from exc
        return cls(**values)  # type: ignore[arg-type]
