"""The PostgreSQL gateway: an asyncpg pool behind a small trio-facing API (as triopg does).

Every call goes through the trio-asyncio bridge; a transaction is a trio async context manager
that commits on success and rolls back (shielded, bounded) on any exception or cancellation.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio

from kaleido.breaker import CircuitBreaker
from kaleido.gateways._bridge import AsyncioBridge, map_postgres_error

# Bounds on one statement and on waiting for a connection, so a hung server is an error.
COMMAND_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
POOL_MAX_SIZE = 8
# HTTP routes get a pool of their own (flooding them cannot starve the syncer or the
# consumers) whose statements PostgreSQL cancels after this long.
ROUTES_POOL_MAX_SIZE = 8
ROUTES_STATEMENT_TIMEOUT = 5.0
CLOSE_TIMEOUT = 3.0


async def _called(method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    # A connection asyncpg released when it was lost (pg_terminate_backend, a restart) raises
    # InterfaceError as its method is called, not when awaited: called here, inside the
    # bridge, it is mapped (PostgresUnavailable) like any other error of the call.
    return await method(*args)


class _Queries:
    """fetch/fetchrow/fetchval/execute/executemany over one asyncpg connection or pool."""

    _target: Any
    _bridge: AsyncioBridge

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return list(await self._bridge.run(_called(self._target.fetch, query, *args)))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._bridge.run(_called(self._target.fetchrow, query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._bridge.run(_called(self._target.fetchval, query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        result: str = await self._bridge.run(_called(self._target.execute, query, *args))
        return result

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        await self._bridge.run(_called(self._target.executemany, query, args))


class Transaction(_Queries):
    """Queries inside one open transaction on one connection."""

    def __init__(self, connection: Any, bridge: AsyncioBridge) -> None:
        self._target = connection
        self._bridge = bridge


class PostgresGateway(_Queries):
    """Trio-facing PostgreSQL pool. Every error is one of `kaleido.errors`."""

    def __init__(self, pool: Any, bridge: AsyncioBridge, url: str) -> None:
        self._target = pool
        self._bridge = bridge
        self.url = url
        self.breaker = bridge.breaker

    @classmethod
    async def connect(
        cls,
        loop: Any,
        url: str,
        breaker: CircuitBreaker | None = None,
        *,
        max_size: int = POOL_MAX_SIZE,
        statement_timeout: float | None = None,
    ) -> PostgresGateway:
        """Create the pool; with min_size=0 it connects lazily, so a down server is not fatal.
        `statement_timeout` (seconds) is set on every connection of the pool."""
        bridge = AsyncioBridge(loop, map_postgres_error, breaker)
        settings = {}
        if statement_timeout is not None:
            settings["statement_timeout"] = str(int(statement_timeout * 1000))
        pool = await bridge.run(
            asyncpg.create_pool(
                url,
                min_size=0,
                max_size=max_size,
                command_timeout=COMMAND_TIMEOUT,
                timeout=CONNECT_TIMEOUT,
                max_inactive_connection_lifetime=120.0,
                server_settings=settings,
            )
        )
        return cls(pool, bridge, url)

    @asynccontextmanager
    async def transaction(self, *, isolation: str = "read_committed") -> AsyncIterator[Transaction]:
        """Yield a Transaction; COMMIT when the block ends, ROLLBACK when it raises."""
        connection = await self._bridge.run(self._target.acquire(timeout=CONNECT_TIMEOUT))
        try:
            tx = connection.transaction(isolation=isolation)
            await self._bridge.run(tx.start())
            try:
                yield Transaction(connection, self._bridge)
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    # The original error matters more than a failed rollback.
                    with contextlib.suppress(Exception):
                        await self._bridge.run(tx.rollback(), guarded=False)
                raise
            await self._bridge.run(tx.commit())
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT) as scope:
                try:
                    await self._bridge.run(self._target.release(connection), guarded=False)
                except Exception:
                    scope.cancel()
            if scope.cancelled_caught:
                connection.terminate()

    async def aclose(self) -> None:
        """Close the pool, shielded and bounded; terminate connections if that takes too long."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self._bridge.run(self._target.close(), guarded=False)
                    return
                except Exception:
                    pass
            self._target.terminate()
