"""Private servers for test suites: `migrated_servers()` (a redis-server or a Redis Cluster, and
PostgreSQL, with the schema migrated) and `KaleidoServers`, the session's pair with a migrated
template database that each test copies."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import trio

from kaleido.devstack import DevStack, default_redis_conf, dev_stack
from kaleido.gateways import open_backends
from kaleido.migrate import migrate
from kaleido.settings import Settings

TEMPLATE_DATABASE = "kaleido_template"
_numbers = itertools.count(1)


@attrs.frozen
class KaleidoServers:
    """The session's private servers and the migrated template database."""

    stack: DevStack

    def database_url(self, database: str) -> str:
        return self.stack.database_url.rsplit("/", 1)[0] + "/" + database

    def new_database(self) -> str:
        """A fresh database, a copy of the migrated template; returns its URL."""
        name = f"kaleido_test_{next(_numbers)}"
        self.stack.postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
        return self.database_url(name)


@contextmanager
def migrated_servers(
    redis_conf: Path | None = None, *, cluster: bool = False, database: str | None = None
) -> Iterator[DevStack]:
    """Private redis-server (or a 3-master cluster) and PostgreSQL on free ports, with the schema
    migrated into `database` (created first) or, without one, the stack's own database; both
    servers stop when the block exits. Call it from the main thread, outside `trio.run`."""
    with tempfile.TemporaryDirectory(prefix="kaleido-testing-") as tmp:
        Path(tmp).chmod(0o711)  # the postgres user must reach its data folder; no one lists it
        conf = redis_conf or default_redis_conf()
        with dev_stack(Path(tmp), conf, fast=True, cluster=cluster) as stack:
            url = stack.database_url
            if database is not None:
                stack.postgres.psql(f"CREATE DATABASE {database}")
                url = url.rsplit("/", 1)[0] + "/" + database
            settings = Settings(redis_url=stack.redis_url, database_url=url)

            async def prepare() -> None:
                async with open_backends(settings) as backends:
                    await migrate(backends.postgres)

            trio.run(prepare)
            yield stack
