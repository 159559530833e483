"""Versioned schema migrations, applied idempotently when a component starts.

Migrations are the ``NNNN_name.cql`` files in ``engine/migrations``, applied in
order. Each statement is written to be safe to run again (``IF NOT EXISTS``),
and a migration is recorded in ``schema_migrations`` with a checksum once all
its statements succeeded; a recorded migration whose file has since changed is
refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from engine.exceptions import ConfigError
from engine.store import CqlStore

__all__ = ["MIGRATIONS_DIR", "Migration", "apply_migrations", "load_migrations"]

log = structlog.get_logger()

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file, split into statements."""

    version: int
    name: str
    checksum: str
    statements: tuple[str, ...]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read every ``NNNN_name.cql`` file in version order."""
    migrations = []
    for path in sorted(directory.glob("*.cql")):
        version_text, _, name = path.stem.partition("_")
        text = path.read_text(encoding="utf-8")
        migrations.append(
            Migration(
                version=int(version_text),
                name=name,
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
                statements=tuple(_split_statements(text)),
            )
        )
    return migrations


def _split_statements(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def apply_migrations(
    store: CqlStore,
    *,
    replication: str | None = None,
    directory: Path = MIGRATIONS_DIR,
) -> list[int]:
    """Create the keyspace if asked and apply every migration not yet applied.

    Args:
        store: a store whose keyspace is the target.
        replication: CQL replication map to create the keyspace with when it
            does not exist; None expects it to exist (production).
        directory: where the migration files are.

    Returns:
        Versions applied by this call (empty when the schema was current).

    Raises:
        ConfigError: a recorded migration's file has changed since.
    """
    if replication is not None:
        store.execute_sync(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = " + replication
        )
    store.execute_sync(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
        " version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    applied = {
        row.version: row.checksum
        for row in store.execute_sync(
            "SELECT version, checksum FROM {ks}.schema_migrations"
        )
    }

    done = []
    for migration in load_migrations(directory):
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise ConfigError(
                    "applied migration was edited; add a new one instead",
                    version=migration.version,
                    name=migration.name,
                )
            continue
        session = store.session
        session.set_keyspace(store.keyspace)
        for statement in migration.statements:
            store.execute_sync(statement)
        store.execute_sync(
            "INSERT INTO {ks}.schema_migrations (version, name, checksum, applied_at)"
            " VALUES (%s, %s, %s, toTimestamp(now()))",
            (migration.version, migration.name, migration.checksum),
        )
        log.info("schema_migrated", version=migration.version, name=migration.name)
        done.append(migration.version)
    return done
