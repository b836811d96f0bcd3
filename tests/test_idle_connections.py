"""Connections the server closes (Redis `timeout`, PostgreSQL terminating a backend) are
replaced without any error reaching the caller."""

from __future__ import annotations

import redis as sync_redis
import trio

from kaleido.devstack import DevStack
from kaleido.gateways import Backends

from .waiting import wait_until


async def test_redis_idle_timeout_is_invisible(backends: Backends, stack: DevStack) -> None:
    admin = sync_redis.Redis.from_url(stack.redis_url)
    assert await backends.redis.execute("SET", "k", "1")
    admin.config_set("timeout", 1)
    try:

        async def server_closed_ours() -> bool:
            clients = admin.client_list()
            return not any(c["name"] == "kaleido" for c in clients)

        await wait_until(server_closed_ours, timeout=10)
        assert await backends.redis.execute("GET", "k") == b"1"  # no error: reconnected
    finally:
        admin.config_set("timeout", 300)
        admin.close()


async def test_postgres_terminated_connection_is_invisible(
    backends: Backends, stack: DevStack
) -> None:
    pg = backends.postgres
    own = await pg.fetchval("SELECT pg_backend_pid()")  # the pool now holds this idle connection
    killed = await trio.to_thread.run_sync(
        stack.postgres.psql, f"SELECT pg_terminate_backend({own})"
    )
    assert killed.strip() == "t"

    async def backend_gone() -> bool:
        query = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {own}"
        return (await trio.to_thread.run_sync(stack.postgres.psql, query)).strip() == "0"

    await wait_until(backend_gone, timeout=10)  # the server closed it while it sat idle

    async def still_answers() -> bool:
        return bool(await pg.fetchval("SELECT pg_backend_pid()") != own)

    for _ in range(5):  # every call succeeds: a dead pooled connection is never handed out
        assert await still_answers()
