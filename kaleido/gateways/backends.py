"""`open_backends`: the trio-asyncio loop, the Redis client and the PostgreSQL pool, together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio_asyncio

from kaleido.errors import ConfigError
from kaleido.gateways.postgres import PostgresGateway
from kaleido.gateways.redis import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.settings import Settings


@attrs.frozen
class Backends:
    """What an actor needs to reach the outside world."""

    redis: RedisGateway
    postgres: PostgresGateway
    keys: KeyLayout
    settings: Settings


@asynccontextmanager
async def open_backends(settings: Settings) -> AsyncIterator[Backends]:
    """Open the asyncio loop and both clients; close everything, shielded, on the way out.

    The loop encloses every task that uses the clients: callers run their nursery inside this
    block. Neither client connects here, so a server that is down is reported by the first call
    (and by `/readyz`), not by start-up.
    """
    if settings.redis_url is None or settings.database_url is None:
        raise ConfigError("open_backends needs both a Redis URL and a database URL")
    async with trio_asyncio.open_loop() as loop:
        redis = RedisGateway.connect(loop, settings.redis_url)
        try:
            postgres = await PostgresGateway.connect(loop, settings.database_url)
            try:
                yield Backends(redis, postgres, KeyLayout(settings.key_prefix), settings)
            finally:
                await postgres.aclose()
        finally:
            await redis.aclose()
