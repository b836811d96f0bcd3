"""`open_backends`: the trio-asyncio loop, the Redis client and the PostgreSQL pool, together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio_asyncio

from kaleido.breaker import BreakerConfig, BreakerState, CircuitBreaker
from kaleido.errors import ConfigError, PostgresUnavailable, RedisUnavailable, TransientError
from kaleido.gateways.postgres import (
    ROUTES_POOL_MAX_SIZE,
    ROUTES_STATEMENT_TIMEOUT,
    PostgresGateway,
)
from kaleido.gateways.redis import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.logs import get_logger
from kaleido.settings import Settings


@attrs.frozen
class Backends:
    """What an actor needs to reach the outside world."""

    redis: RedisGateway
    postgres: PostgresGateway  # the actors' pool, behind the circuit breaker
    keys: KeyLayout
    settings: Settings
    # The HTTP routes' own pool (statement timeout, no breaker: a route waiting for one of its
    # connections is not a PostgreSQL failure); None: they share `postgres`.
    routes_postgres: PostgresGateway | None = None

    @property
    def postgres_for_routes(self) -> PostgresGateway:
        return self.routes_postgres or self.postgres


# Blocking stream reads last up to a second: only calls far slower than that count as slow.
# PostgreSQL statements of a large sync batch may take seconds; its timeout is the driver's.
# A half-open breaker reopens when its probes are not all back within `max_half_open_wait`: a
# probe stuck on a connection that never answers (a half-open TCP connection) kept every
# other call out, readiness included, for the whole 60 s of its timeout.
BREAKERS = {
    "redis": BreakerConfig(slow_call_threshold=5.0, call_timeout=8.0, max_half_open_wait=8.0),
    "postgres": BreakerConfig(slow_call_threshold=10.0, call_timeout=60.0, max_half_open_wait=20.0),
}
_TIMEOUT_ERRORS: dict[str, type[TransientError]] = {
    "redis": RedisUnavailable,
    "postgres": PostgresUnavailable,
}


def log_transition(name: str, old: BreakerState, new: BreakerState) -> None:
    log = get_logger("kaleido.breaker")
    (log.warning if new is BreakerState.OPEN else log.info)(
        "breaker.transition", breaker=name, old=old.value, new=new.value
    )


def make_breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        BREAKERS[name],
        on_transition=log_transition,
        timeout_error=_TIMEOUT_ERRORS[name],
    )


def log_asyncio_error(loop: Any, context: dict[str, Any]) -> None:
    """The loop's exception handler: log what asyncio reports and carry on.

    trio-asyncio's default handler re-raises it in the loop's nursery, which ends every task
    on the loop, the whole service with them. What reaches it here is never the caller's
    error, which its awaiting task gets: asyncpg's "Resetting connection with an active
    transaction" (a connection released while its COMMIT or ROLLBACK was cut off with the
    connection), or the failure of a release that asyncpg shields from a caller who stopped
    waiting ("Task exception was never retrieved"). The pool has already dropped such a
    connection; nothing is left to handle.
    """
    exception = context.get("exception")
    get_logger("kaleido.gateways").warning(
        "asyncio.unhandled",
        message=context.get("message", ""),
        error=None if exception is None else f"{type(exception).__name__}: {exception}",
    )


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
        loop.set_exception_handler(log_asyncio_error)
        redis = RedisGateway.connect(
            loop, settings.redis_url, make_breaker("redis"), scripts=settings.redis_scripts
        )
        try:
            postgres = await PostgresGateway.connect(
                loop, settings.database_url, make_breaker("postgres")
            )
            try:
                routes = await PostgresGateway.connect(
                    loop,
                    settings.database_url,
                    max_size=ROUTES_POOL_MAX_SIZE,
                    statement_timeout=ROUTES_STATEMENT_TIMEOUT,
                )
                try:
                    yield Backends(
                        redis,
                        postgres,
                        KeyLayout(
                            settings.key_prefix,
                            settings.view_partitions,
                            cluster=redis.is_cluster,
                        ),
                        settings,
                        routes,
                    )
                finally:
                    await routes.aclose()
            finally:
                await postgres.aclose()
        finally:
            await redis.aclose()
