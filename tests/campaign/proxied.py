"""Backends reached through a FaultProxy, and the bytes that name one call in a request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from kaleido.devstack import DevStack, RedisServer
from kaleido.gateways import Backends, Script, open_backends
from kaleido.settings import Settings

from .proxy import FaultProxy


def call_of(script: Script, settings: Settings) -> bytes:
    """What names a script in its command: the function's name (FCALL) or the SHA (EVALSHA)."""
    return (script.function if settings.redis_scripts == "functions" else script.sha).encode()


def proxied_settings(
    stack: DevStack, settings: Settings, proxy: FaultProxy, *, postgres: bool = False
) -> Settings:
    """`settings` with Redis (or, with `postgres`, PostgreSQL) reached through `proxy`."""
    if postgres:
        port = stack.postgres.port
        url = stack.postgres.url.replace(f":{port}/", f":{proxy.port}/")
        return attrs.evolve(settings, database_url=url)
    assert isinstance(stack.redis, RedisServer)
    port = stack.redis.port
    return attrs.evolve(settings, redis_url=stack.redis.url.replace(f":{port}/", f":{proxy.port}/"))


@asynccontextmanager
async def through_proxy(
    stack: DevStack, settings: Settings, nursery: trio.Nursery, *, postgres: bool = False
) -> AsyncIterator[tuple[FaultProxy, Backends]]:
    """A proxy in front of the single Redis (or PostgreSQL), and backends that use it."""
    if postgres:
        port = stack.postgres.port
    else:
        assert isinstance(stack.redis, RedisServer), "the proxy stands before one redis-server"
        port = stack.redis.port
    proxy = FaultProxy(port)
    await nursery.start(proxy.run)
    async with open_backends(proxied_settings(stack, settings, proxy, postgres=postgres)) as b:
        yield proxy, b


def drop_reply(
    proxy: FaultProxy, call: bytes, before_reset: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Drop the reply to the next request naming `call`, after the backend ran it."""
    proxy.faults.drop_reply_to = call
    proxy.faults.before_reset = before_reset
