"""View counting against real Redis and PostgreSQL: dedup, sync, exact totals at every step."""

from __future__ import annotations

import trio

from kaleido.gateways import Backends
from kaleido.views import ledger
from kaleido.views.totals import read_total

from .views_helpers import create_posts, pg_view_counts, redis_leftovers, store_of, sync_of
from .waiting import wait_until


async def test_a_view_counts_once_per_user_and_post(backends: Backends) -> None:
    store = store_of(backends)
    flags, pending = await store.record([(1, 10), (1, 10), (2, 10), (1, 11), (2, 10)])
    assert flags == [True, False, True, True, False]
    assert pending == 2
    redis = backends.redis
    assert await redis.execute("GET", "post:views:10") == b"2"
    assert await redis.execute("GET", "post:views:11") == b"1"
    assert await redis.execute("SMEMBERS", "pending:views") == {b"10", b"11"}
    assert await redis.execute("GET", "user:view:1:10") == b"1"
    ttl = await redis.execute("TTL", "user:view:1:10")
    assert 86390 < ttl <= 86400


async def test_dedup_expires_after_the_ttl(backends: Backends) -> None:
    store = store_of(backends, ttl=1)
    assert (await store.record([(5, 50)]))[0] == [True]
    assert (await store.record([(5, 50)]))[0] == [False]

    async def flag_expired() -> bool:
        return not await backends.redis.execute("EXISTS", "user:view:5:50")

    await wait_until(flag_expired, timeout=5)  # real Redis expiry
    assert (await store.record([(5, 50)]))[0] == [True]
    assert await backends.redis.execute("GET", "post:views:50") == b"2"


async def test_two_racing_ingesters_count_a_view_once(backends: Backends, settings) -> None:
    from kaleido.gateways import open_backends

    async with open_backends(settings) as other:
        a, b = store_of(backends), store_of(other)
        results: list[list[bool]] = []

        async def ingest(store, views) -> None:
            results.append((await store.record(views))[0])

        views = [(u, 7) for u in range(1, 501)]
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(ingest, a, views)
                nursery.start_soon(ingest, b, list(reversed(views)))
    assert sum(sum(r) for r in results) == 500
    assert await backends.redis.execute("GET", "post:views:7") == b"500"


async def test_sync_writes_counts_and_clears_exactly_what_it_wrote(backends: Backends) -> None:
    await create_posts(backends, 1, 2)
    store = store_of(backends)
    await store.record([(u, 1) for u in range(1, 6)] + [(u, 2) for u in range(1, 3)])
    report = await sync_of(backends).run_once()
    assert (report.batches, report.posts, report.views) == (1, 2, 7)
    assert await pg_view_counts(backends) == {1: 5, 2: 2}
    assert await redis_leftovers(backends) == []
    # the dedup flags stay: the same users viewing again are still duplicates
    assert (await store.record([(1, 1)]))[0] == [False]


async def test_sync_in_chunks(backends: Backends) -> None:
    await create_posts(backends, *range(1, 101))
    await store_of(backends).record([(u, p) for p in range(1, 101) for u in range(1, p % 5 + 2)])
    report = await sync_of(backends, chunk_size=7).run_once()
    assert report.batches == 15 and report.posts == 100
    expected = {p: p % 5 + 1 for p in range(1, 101)}
    assert await pg_view_counts(backends) == expected
    assert await redis_leftovers(backends) == []


async def test_views_of_a_post_with_no_row_are_kept_and_folded_in_later(
    backends: Backends,
) -> None:
    store = store_of(backends)
    await store.record([(1, 99), (2, 99), (3, 99)])
    await sync_of(backends).run_once()
    assert await redis_leftovers(backends) == []  # not stuck in pending:views
    assert (await read_total(store, backends.postgres, 99)).views == 3
    await create_posts(backends, 99)
    await store.record([(4, 99)])
    await sync_of(backends).run_once()
    row = await backends.postgres.fetchrow("SELECT view_count FROM posts WHERE post_id = 99")
    assert row["view_count"] == 4
    assert await backends.postgres.fetchval("SELECT count(*) FROM post_view_backlog") == 0


async def test_total_is_exact_between_every_step_of_a_sync(backends: Backends) -> None:
    await create_posts(backends, 1)
    store, pg = store_of(backends), backends.postgres
    await store.record([(u, 1) for u in range(1, 11)])

    async def total() -> int:
        return (await read_total(store, pg, 1)).views

    assert await total() == 10
    await store.move_to_batch("00000000-0000-0000-0000-000000000001", 100)
    assert await total() == 10  # in flight
    await store.record([(u, 1) for u in range(11, 14)])
    assert await total() == 13  # in flight + new counter
    deltas = await store.batch_contents("00000000-0000-0000-0000-000000000001")
    assert await ledger.apply_batch(pg, "00000000-0000-0000-0000-000000000001", deltas)
    assert await total() == 13  # applied but not yet forgotten: not counted twice
    assert not await ledger.apply_batch(pg, "00000000-0000-0000-0000-000000000001", deltas)
    await store.forget_batch("00000000-0000-0000-0000-000000000001")
    assert await total() == 13
    await sync_of(backends).run_once()
    assert await total() == 13
    assert await pg_view_counts(backends) == {1: 13}


async def test_two_syncers_without_the_lock_never_apply_twice(backends: Backends, settings) -> None:
    from kaleido.gateways import open_backends

    await create_posts(backends, *range(1, 51))
    store = store_of(backends)
    async with open_backends(settings) as other:
        for round_ in range(5):
            await store.record([(u + 100 * round_, p) for p in range(1, 51) for u in range(3)])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sync_of(backends, chunk_size=4).run_once)
                nursery.start_soon(sync_of(other, chunk_size=4).run_once)
    assert await pg_view_counts(backends) == {p: 15 for p in range(1, 51)}
    assert await redis_leftovers(backends) == []


async def test_a_left_over_batch_is_finished_by_the_next_sync(backends: Backends) -> None:
    await create_posts(backends, 3)
    store = store_of(backends)
    await store.record([(1, 3), (2, 3)])
    await store.move_to_batch("00000000-0000-0000-0000-00000000000a", 10)
    # a crashed syncer applied it but did not forget it
    deltas = await store.batch_contents("00000000-0000-0000-0000-00000000000a")
    await ledger.apply_batch(backends.postgres, "00000000-0000-0000-0000-00000000000a", deltas)
    await store.record([(3, 3)])
    await store.move_to_batch("00000000-0000-0000-0000-00000000000b", 10)  # crashed before COMMIT
    report = await sync_of(backends).run_once()
    assert report.recovered_batches == 1 and report.skipped_batches == 1
    assert await pg_view_counts(backends) == {3: 3}
    assert await redis_leftovers(backends) == []
