"""Schema migrations: ordered SQL files shipped in `kaleido/migrations`, applied at start-up.

All pending files run in one transaction under a transaction-scoped advisory lock, so two
processes starting together serialise: the second finds the work done and applies nothing.
"""

from __future__ import annotations

import re
from importlib import resources

import attrs

from kaleido.errors import ConfigError
from kaleido.gateways import PostgresGateway

# Longest wait for a lock while migrating (PostgreSQL's lock_timeout).
LOCK_TIMEOUT = 10.0
# An arbitrary constant that names "Kaleido's schema" among advisory locks.
MIGRATION_LOCK_ID = 0x4B414C45
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The shipped migrations in version order; a misnamed or duplicate file is an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files("kaleido.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME_RE.match(entry.name)
        if not match:
            raise ConfigError(f"migration file {entry.name!r}: expected NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ConfigError(f"migration version {version} appears twice")
        found[version] = Migration(version, match.group(2), entry.read_text("utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(postgres: PostgresGateway, lock_timeout: float = LOCK_TIMEOUT) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    Under `lock_timeout`: a migration that waits that long for a lock (another process's
    migration, or a long transaction holding a table) fails with PostgreSQL's reason instead of
    holding start-up, and every query queued behind its lock, indefinitely."""
    applied_now: list[int] = []
    async with postgres.transaction() as tx:
        await tx.execute(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}")
        await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await tx.fetch("SELECT version FROM schema_migrations")}
        for migration in available_migrations():
            if migration.version in done:
                continue
            await tx.execute(migration.sql)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
    return applied_now


async def schema_version(postgres: PostgresGateway) -> int | None:
    """The highest applied migration, or None when the schema was never migrated."""
    exists = await postgres.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return None
    version: int | None = await postgres.fetchval("SELECT max(version) FROM schema_migrations")
    return version
