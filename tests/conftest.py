"""Shared fixtures: one private Redis and PostgreSQL per test session (real servers on free
ports, started by kaleido.devstack), reset before each test that uses them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
import trio

from kaleido.devstack import DevStack, dev_stack
from kaleido.gateways import Backends, open_backends
from kaleido.migrate import migrate
from kaleido.settings import Settings

REPO = Path(__file__).resolve().parent.parent

TABLES = (
    "posts, post_media, media_ai_insights, media_detected_faces, processed_messages, "
    "view_sync_batches, post_view_backlog, view_journal"
)


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    with tempfile.TemporaryDirectory(prefix="kaleido-test-") as tmp:
        os.chmod(tmp, 0o755)  # the postgres user must reach its data folder
        with dev_stack(Path(tmp), REPO / "redis.conf", fast=True) as running:
            settings = Settings(redis_url=running.redis_url, database_url=running.database_url)

            async def prepare() -> None:
                async with open_backends(settings) as backends:
                    await migrate(backends.postgres)

            trio.run(prepare)
            yield running


@pytest.fixture
def settings(stack: DevStack) -> Settings:
    return Settings(
        redis_url=stack.redis_url,
        database_url=stack.database_url,
        http_port=0,
        sync_interval=300.0,
        admin_token="test-admin-token-0123456789",
        log_format="console",
    )


async def reset(backends: Backends) -> None:
    await backends.redis.execute("FLUSHALL")
    await backends.postgres.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture
async def backends(settings: Settings) -> AsyncIterator[Backends]:
    async with open_backends(settings) as opened:
        await reset(opened)
        yield opened


def with_settings(settings: Settings, **changes: object) -> Settings:
    return attrs.evolve(settings, **changes)
