"""The gateways against real Redis and PostgreSQL: round trips, error mapping, migrations."""

from __future__ import annotations

import asyncpg
import attrs
import pytest
import redis.exceptions as rexc
import trio
import trio.testing
from structlog.testing import capture_logs

from kaleido import errors
from kaleido.gateways import Backends, Script, open_backends
from kaleido.gateways._bridge import map_postgres_error, map_redis_error
from kaleido.migrate import MIGRATION_LOCK_ID, available_migrations, migrate, schema_version
from kaleido.settings import Settings


async def test_redis_round_trips(backends: Backends) -> None:
    redis = backends.redis
    assert await redis.ping()
    assert await redis.execute("SET", "k", "v") is True
    assert await redis.execute("GET", "k") == b"v"
    replies = await redis.pipeline([("INCR", "n"), ("INCR", "n"), ("GET", "n")])
    assert replies == [1, 2, b"2"]
    assert await redis.pipeline([("SET", "a", 1), ("GET", "a")], transaction=True) == [True, b"1"]


async def test_scripts_survive_script_flush_in_the_eval_mode(settings: Settings) -> None:
    script = Script("echo", "return ARGV[1]")
    async with open_backends(attrs.evolve(settings, redis_scripts="eval")) as backends:
        assert await backends.redis.run_script(script, [], ["x"]) == b"x"
        await backends.redis.execute("SCRIPT", "FLUSH")
        assert await backends.redis.run_script(script, [], ["y"]) == b"y"
        assert await backends.redis.run_scripts(script, [([], ["z"])]) == [b"z"]


async def test_a_function_redis_lacks_is_one_clear_error(backends: Backends) -> None:
    script = Script("echo", "return ARGV[1]")  # in no module of the package: not in the library
    for call in (
        backends.redis.run_script(script, [], ["x"]),
        backends.redis.run_scripts(script, [([], ["x"])]),
    ):
        with pytest.raises(errors.RedisFunctionMissing) as caught:
            await call
        message = str(caught.value)
        assert script.function in message and "kaleido redis-acl --setuser" in message
        assert "\n" not in message


async def test_redis_errors_are_mapped(backends: Backends) -> None:
    redis = backends.redis
    await redis.execute("SET", "str", "x")
    with pytest.raises(errors.RedisCommandError, match="WRONGTYPE"):
        await redis.execute("LPUSH", "str", "y")
    with pytest.raises(errors.NoGroup):
        await redis.execute("XREADGROUP", "GROUP", "g", "c", "STREAMS", "nostream", ">")
    with pytest.raises(errors.RedisCommandError) as caught:
        await redis.execute("XGROUP", "CREATE", "nostream", "g", "$")
    assert caught.value.code == "ERR" and str(caught.value).startswith("redis: ERR ")


async def test_a_full_redis_is_out_of_memory(backends: Backends) -> None:
    # redis-py moves a known code (OOM) out of the message; the mapping must still see it.
    redis = backends.redis
    before = await redis.execute("CONFIG", "GET", "maxmemory")
    await redis.execute("CONFIG", "SET", "maxmemory", "1")
    try:
        with pytest.raises(errors.RedisOutOfMemory, match="OOM command not allowed"):
            await redis.execute("SET", "k", "v")
    finally:
        await redis.execute("CONFIG", "SET", "maxmemory", before[b"maxmemory"])


async def test_redis_down_is_unavailable(settings: Settings) -> None:
    down = Settings(redis_url="redis://127.0.0.1:1/0", database_url=settings.database_url)
    async with open_backends(down) as backends:
        with pytest.raises(errors.RedisUnavailable):
            await backends.redis.ping()


async def test_postgres_round_trips_and_transactions(backends: Backends) -> None:
    pg = backends.postgres
    assert await pg.fetchval("SELECT 1 + 1") == 2
    async with pg.transaction() as tx:
        await tx.execute("INSERT INTO posts (post_id, user_id) VALUES (1, 1)")
    with pytest.raises(RuntimeError):
        async with pg.transaction() as tx:
            await tx.execute("INSERT INTO posts (post_id, user_id) VALUES (2, 1)")
            raise RuntimeError("roll back")
    with trio.move_on_after(0.01):
        async with pg.transaction() as tx:
            await tx.execute("INSERT INTO posts (post_id, user_id) VALUES (3, 1)")
            await trio.sleep_forever()  # cancelled: rolls back
    assert [r["post_id"] for r in await pg.fetch("SELECT post_id FROM posts")] == [1]


async def test_postgres_errors_are_mapped(backends: Backends, settings: Settings) -> None:
    with pytest.raises(errors.PostgresQueryError, match="42P01"):
        await backends.postgres.fetch("SELECT * FROM no_such_table")
    down = Settings(redis_url=settings.redis_url, database_url="postgresql://u@127.0.0.1:1/x")
    async with open_backends(down) as other:
        with pytest.raises(errors.PostgresUnavailable):
            await other.postgres.fetchval("SELECT 1")


def test_a_connection_broken_mid_operation_is_transient() -> None:
    # What asyncpg raises when PostgreSQL stops under a running transaction: retry, never DLQ.
    broken = asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    assert isinstance(map_postgres_error(broken), errors.PostgresUnavailable)
    assert isinstance(
        map_postgres_error(asyncpg.UndefinedTableError("x")), errors.PostgresQueryError
    )


async def test_a_transaction_whose_connection_was_lost_fails_as_unavailable(
    backends: Backends,
) -> None:
    """asyncpg hands a lost connection back to its pool, and the transaction's next call
    raises InterfaceError as it is made, outside any await: that too must come out as
    PostgresUnavailable, or an actor crashes on a dropped session instead of retrying."""
    with pytest.raises(errors.PostgresUnavailable, match="released back to the pool"):
        async with backends.postgres.transaction() as tx:
            await tx.execute("SELECT 1")
            tx._target.terminate()  # as a server gone away leaves it
            await tx.execute("SELECT 1")


@pytest.mark.parametrize(
    "exc",
    [
        rexc.RedisClusterUnreachableError("Redis Cluster cannot be connected"),
        rexc.SlotNotCoveredError("Slot 15979 is not covered by the cluster"),
    ],
)
def test_a_cluster_without_a_reachable_node_is_unavailable(exc: Exception) -> None:
    # Neither is a RedisError: unmapped, they crashed every consumer at once during failovers.
    mapped = map_redis_error(exc)
    assert isinstance(mapped, errors.RedisUnavailable) and type(exc).__name__ in str(mapped)


async def test_posts_leave_room_for_in_place_view_count_updates(backends: Backends) -> None:
    options = await backends.postgres.fetchval(
        "SELECT reloptions FROM pg_class WHERE relname = 'posts'"
    )
    assert options == ["fillfactor=70"]


async def test_migrations_are_idempotent(backends: Backends) -> None:
    latest = available_migrations()[-1].version
    assert await migrate(backends.postgres) == []  # the session already migrated
    assert await schema_version(backends.postgres) == latest


async def test_two_processes_migrating_together_are_safe(stack: object, settings: Settings) -> None:
    # A fresh database that two "processes" (two pools) migrate at the same time.
    async with open_backends(settings) as admin:
        await admin.postgres.execute("DROP DATABASE IF EXISTS kaleido_migrate_race")
        await admin.postgres.execute("CREATE DATABASE kaleido_migrate_race")
    url = settings.database_url.rsplit("/", 1)[0] + "/kaleido_migrate_race"  # type: ignore[union-attr]
    race = Settings(redis_url=settings.redis_url, database_url=url)
    results: list[list[int]] = []
    async with open_backends(race) as a, open_backends(race) as b:

        async def run(backends: Backends) -> None:
            results.append(await migrate(backends.postgres))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, a)
            nursery.start_soon(run, b)
        versions = [m.version for m in available_migrations()]
        assert sorted(results, key=len) == [[], versions]
        rows = await a.postgres.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions


async def test_routes_have_a_pool_of_their_own_with_a_statement_timeout(
    backends: Backends,
) -> None:
    routes = backends.postgres_for_routes
    assert routes is not backends.postgres
    assert routes.breaker is None  # waiting for one of its connections is no backend failure
    assert backends.postgres.breaker is not None
    assert await routes.fetchval("SHOW statement_timeout") == "5s"
    assert await backends.postgres.fetchval("SHOW statement_timeout") == "0"


async def test_a_migration_waits_for_a_lock_only_so_long(backends: Backends) -> None:
    held, release = trio.Event(), trio.Event()

    async def hold_the_migration_lock() -> None:
        async with backends.postgres.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            held.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_the_migration_lock)
        await held.wait()
        with trio.fail_after(10), pytest.raises(errors.PostgresQueryError, match="lock timeout"):
            await migrate(backends.postgres, lock_timeout=0.2)
        release.set()
    assert await migrate(backends.postgres) == []  # free again: nothing left to apply


async def test_errors_carry_their_codes(backends: Backends) -> None:
    """Callers branch on codes, never on message text."""
    await backends.redis.execute("XGROUP", "CREATE", "coded", "g", "0", "MKSTREAM")
    with pytest.raises(errors.RedisCommandError) as redis_error:
        await backends.redis.execute("XGROUP", "CREATE", "coded", "g", "0", "MKSTREAM")
    assert redis_error.value.code == "BUSYGROUP"
    await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (1, 1)")
    with pytest.raises(errors.PostgresQueryError) as pg_error:
        await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (1, 1)")
    assert pg_error.value.sqlstate == "23505"


async def test_what_asyncio_reports_on_its_own_is_logged_and_ends_nothing(
    backends: Backends,
) -> None:
    # asyncpg reports a connection released inside its transaction to the loop's exception
    # handler, as it does a shielded release that failed after its caller stopped waiting;
    # trio-asyncio's own handler would raise it in the loop's nursery and end the service.
    pg = backends.postgres
    pool = pg._target  # the asyncpg pool: the driver's own path, not the gateway's

    async def release_inside_a_transaction() -> None:
        connection = await pool.acquire()
        await connection.transaction().start()
        await pool.release(connection)

    with capture_logs() as logs:
        await pg._bridge.run(release_inside_a_transaction())
        await trio.testing.wait_all_tasks_blocked()  # what the handler scheduled has run
    [line] = [e for e in logs if e["event"] == "asyncio.unhandled"]
    assert "active transaction" in line["message"]
    assert await pg.fetchval("SELECT 1") == 1
