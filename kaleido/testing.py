"""`kaleido.testing`: a pytest plugin for the test suites of programs that embed Kaleido.

Installed with Kaleido (the `pytest11` entry point), it adds fixtures, all opt-in by name:

- `kaleido_servers` (session): a private redis-server and PostgreSQL on free ports, started once
  per test session and stopped at its end (the binaries must be installed; nothing else is
  touched). Both ask for a random password (their loopback ports are open to every local
  account), which their URLs carry; the Redis holds Kaleido's function library;
- `kaleido_settings`: `Settings` for one test: its own Redis key prefix and its own database
  (a copy of a migrated template), so tests never see each other's data;
- `kaleido_app`: a running Kaleido (`open_kaleido(kaleido_settings)`) wrapped in a
  `KaleidoDriver` that drives the actors deterministically: `sync()`, `drained()` and
  `feed(stream, fields)`.

`migrated_servers()` starts the same servers for a fixture of your own (another scope, your own
redis.conf, a Redis Cluster).

Async fixtures and tests run under trio: use pytest-trio (`trio_mode = true`).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
import trio

from kaleido.devstack import DevStack, default_redis_conf, dev_stack
from kaleido.embedded import Kaleido, Views, open_kaleido
from kaleido.gateways import open_backends
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS
from kaleido.migrate import migrate
from kaleido.replies import as_text, id_key
from kaleido.settings import Settings
from kaleido.streams import dlq_list
from kaleido.streams.inbound import RedisInboundStream
from kaleido.views.model import SyncReport

TEMPLATE_DATABASE = "kaleido_template"
DLQ_SCAN = 1000  # dead letters read to find a fed entry's
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


@attrs.frozen
class Fed:
    """What became of an entry `KaleidoDriver.feed` added."""

    entry_id: str
    # "applied" (its effect committed), "ignored" (acknowledged with no effect, e.g. a service
    # this version does not know) or "dead_lettered" (with `dead_letter_error`).
    outcome: str
    dead_letter_error: str | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


@attrs.define
class KaleidoDriver:
    """A running Kaleido and the handles a test needs to drive it."""

    kaleido: Kaleido
    settings: Settings

    @property
    def views(self) -> Views:
        return self.kaleido.views

    async def sync(self) -> SyncReport:
        """Sync buffered views to PostgreSQL now."""
        return await self.kaleido.sync_now()

    async def drained(self) -> None:
        """Wait until every view recorded so far is durable (or was refused)."""
        await self.kaleido.wait_drained()

    async def feed(self, stream: str, fields: Mapping[str, str]) -> Fed:
        """Add an entry to an inbound stream as the ML service would, wait until the consumer
        has dealt with it, and say how: applied, or dead-lettered with its reason. Bound the
        wait with `trio.fail_after` in the test."""
        if stream not in INBOUND_STREAMS:
            raise ValueError(f"{stream!r} is not one of {', '.join(INBOUND_STREAMS)}")
        service = self.kaleido.service
        redis, key = service.backends.redis, service.backends.keys.stream(stream)
        flat = [part for pair in fields.items() for part in pair]
        raw = await redis.execute("XADD", key, "*", *flat)
        entry_id = as_text(raw)
        while not await self._settled(key, entry_id):  # noqa: ASYNC110 - state is in Redis
            await trio.sleep(0.01)
        letters = await dlq_list(redis, service.backends.keys, stream, DLQ_SCAN)
        for letter in letters:
            if letter.original_id == entry_id:
                return Fed(entry_id, "dead_lettered", letter.error)
        recorded = await service.backends.postgres.fetchval(
            "SELECT count(*) FROM processed_messages WHERE stream = $1 AND entry_id = $2",
            key,
            entry_id,
        )
        return Fed(entry_id, "applied" if recorded else "ignored")

    async def _settled(self, key: str, entry_id: str) -> bool:
        """Delivered to the group, and nothing of the group pending: the consumer acknowledged
        it (entries are fed one at a time)."""
        redis = self.kaleido.service.backends.redis
        stream = RedisInboundStream(redis, key, dlq_key="", consumer="kaleido-testing")
        for group in await stream.group_positions():
            if group.name == CONSUMER_GROUP:
                return id_key(group.last_delivered) >= id_key(entry_id) and group.pending == 0
        return False


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


@pytest.fixture(scope="session")
def kaleido_servers() -> Iterator[KaleidoServers]:
    """Private Redis and PostgreSQL for the session, with a migrated template database."""
    with migrated_servers(database=TEMPLATE_DATABASE) as stack:
        yield KaleidoServers(stack)


@pytest.fixture
def kaleido_settings(kaleido_servers: KaleidoServers) -> Settings:
    """Settings of a Kaleido of its own for this test: a fresh key prefix and database."""
    number = next(_numbers)
    return Settings(
        redis_url=kaleido_servers.stack.redis_url,
        database_url=kaleido_servers.new_database(),
        key_prefix=f"test{number}:",
        http_port=0,
        ops_port=0,
        sync_interval=3600.0,  # syncs run when the test asks (`KaleidoDriver.sync`)
        shutdown_deadline=5.0,
        log_format="console",
    )


@pytest.fixture
async def kaleido_app(kaleido_settings: Settings) -> AsyncIterator[KaleidoDriver]:
    """A running Kaleido for this test, stopped (and drained) after it."""
    async with open_kaleido(kaleido_settings) as running:
        yield KaleidoDriver(running, kaleido_settings)
