"""Run asyncio coroutines from trio, and the one place that maps foreign exceptions.

Each gateway call goes through `AsyncioBridge.run`, which hands the coroutine to the captured
trio-asyncio loop, so the call works from any trio task while the loop is open (no reliance on
context variables), and translates library exceptions into `kaleido.errors`.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import redis.exceptions as rexc

from kaleido import errors
from kaleido.breaker import CircuitBreaker

T = TypeVar("T")


ACL_HINT = "`kaleido redis-acl` prints the rule Kaleido's Redis user needs"


# Codes by class, for redis-py releases whose errors have no `status_code`.
_CODES: dict[type[BaseException], str] = {
    rexc.OutOfMemoryError: "OOM",
    rexc.NoPermissionError: "NOPERM",
    rexc.ReadOnlyError: "READONLY",
}


def _reply_text(exc: BaseException) -> str:
    """The whole error reply: redis-py moves a known code ("OOM", "NOPERM", "TRYAGAIN", ...)
    from the message into `status_code`."""
    text = str(exc)
    code = getattr(exc, "status_code", None) or _CODES.get(type(exc))
    if code and not text.startswith(code):
        return f"{code} {text}"
    return text


def map_redis_error(exc: BaseException) -> BaseException:
    """Translate a redis-py (or socket) exception into the project's own."""
    if isinstance(exc, rexc.NoScriptError):
        return exc  # handled by the script runner, which reloads the script
    if isinstance(exc, rexc.ResponseError):
        text = _reply_text(exc)
        if text.startswith("NOPERM"):
            return errors.RedisPermissionDenied(f"redis: {text} ({ACL_HINT})")
        if text.startswith("OOM"):
            return errors.RedisOutOfMemory(f"redis: {text}")
        if text.startswith("NOGROUP"):
            return errors.NoGroup(f"redis: {text}")
        if text.removeprefix("ERR ").startswith("Function not found"):
            return errors.RedisFunctionMissing(f"redis: {text}")
        if text.startswith(("LOADING", "BUSY ", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")):
            return errors.RedisUnavailable(f"redis: {text}")
        return errors.RedisCommandError(f"redis: {text}", code=text.split(" ", 1)[0])
    if isinstance(exc, rexc.RedisClusterUnreachableError | rexc.SlotNotCoveredError):
        # Not RedisErrors: the cluster's client found no node answering, or a slot without a
        # master (a failover under way). Both pass; the client refreshes its map on the retry.
        return errors.RedisUnavailable(f"redis: {type(exc).__name__}: {exc}")
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return errors.RedisCommandError(f"redis: {type(exc).__name__}: {exc}")
    if isinstance(
        exc,
        rexc.ConnectionError
        | rexc.TimeoutError
        | rexc.BusyLoadingError
        | OSError
        | socket.gaierror
        | asyncio.TimeoutError
        | asyncio.CancelledError
        | EOFError,
    ):
        return errors.RedisUnavailable(f"redis: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, rexc.RedisError):
        return errors.RedisCommandError(f"redis: {type(exc).__name__}: {exc}")
    return exc


# SQLSTATE classes worth retrying: connection exceptions (08), insufficient resources (53),
# operator intervention such as admin shutdown (57), serialization failure and deadlock (40).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57", "40")


# asyncpg raises its client-side DataError (not the SQLSTATE 22 class of the same name) when a
# parameter cannot be encoded. It is only in the private module: tests/test_asyncpg_canary.py.
_ENCODER_ERRORS = (asyncpg.exceptions._base.DataError, TypeError, ValueError)


def map_postgres_error(exc: BaseException) -> BaseException:
    """Translate an asyncpg (or socket) exception into the project's own."""
    if isinstance(exc, _ENCODER_ERRORS):
        # Bad input to the driver's encoders (a subclass of InterfaceError): never transient.
        return errors.PostgresQueryError(f"postgres: {type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        message = f"postgres: {type(exc).__name__} [{sqlstate}]: {exc}"
        if sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return errors.PostgresUnavailable(message, statement=not sqlstate.startswith("08"))
        return errors.PostgresQueryError(message, sqlstate=sqlstate)
    if isinstance(
        exc,
        asyncpg.InterfaceError
        # e.g. "cannot switch to state 15; another operation is in progress": the connection
        # broke mid-operation (the server stopped), not a fault of the statement.
        | asyncpg.InternalClientError
        | OSError
        | asyncio.TimeoutError
        | asyncio.CancelledError
        | ConnectionError
        | EOFError,
    ):
        return errors.PostgresUnavailable(f"postgres: {type(exc).__name__}: {exc}".rstrip(": "))
    return exc


class AsyncioBridge:
    """Runs asyncio coroutines on one trio-asyncio loop, mapping their exceptions.

    With a circuit breaker, every call goes through it: while the breaker is open, calls fail
    fast with `CircuitOpen` (a TransientError) instead of waiting on a dead server.
    """

    def __init__(
        self,
        loop: Any,
        mapper: Callable[[BaseException], BaseException],
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._loop = loop
        self._mapper = mapper
        self.breaker = breaker

    async def run(self, coro: Awaitable[T], *, guarded: bool = True) -> T:
        """Run `coro`; `guarded=False` bypasses the breaker (clean-up must always be tried)."""
        if self.breaker is None or not guarded:
            return await self._run(coro)
        try:
            async with self.breaker.guard():
                return await self._run(coro)
        finally:
            # Refused by an open breaker, the coroutine never ran: close it so that Python does
            # not warn it was never awaited. Closing one that ran to its end does nothing.
            if inspect.iscoroutine(coro):
                coro.close()

    async def _run(self, coro: Awaitable[T]) -> T:
        try:
            result: T = await self._loop.run_aio_coroutine(coro)
        except Exception as exc:
            mapped = self._mapper(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        except asyncio.CancelledError as exc:
            # An asyncio-side cancellation that trio did not ask for (the loop is closing, or
            # the library cancelled its own task): never let it escape as a foreign exception.
            raise self._mapper(exc) from exc
        return result
