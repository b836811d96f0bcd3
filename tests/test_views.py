"""View counting against real Redis and PostgreSQL: dedup, sync, exact totals at every step."""

from __future__ import annotations

import time

import pytest
import trio
from redis.crc import key_slot

from kaleido.gateways import Backends, open_backends
from kaleido.settings import Settings
from kaleido.views import ledger
from kaleido.views.dedup import BUCKET_CAP
from kaleido.views.store import ViewStore, last_synced
from kaleido.views.totals import read_total

from .conftest import with_settings
from .views_helpers import (
    all_keys,
    create_posts,
    pg_view_counts,
    redis_leftovers,
    store_of,
    sync_of,
)
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")


async def test_a_view_counts_once_per_user_and_post(backends: Backends) -> None:
    store = store_of(backends)
    flags, pending = await store.record([(1, 10), (1, 10), (2, 10), (1, 11), (2, 10)])
    assert flags == [True, False, True, True, False]
    assert pending == 2
    redis, keys = backends.redis, backends.keys
    assert await redis.execute("HGETALL", keys.counts(10)) == {b"10": b"2"}
    assert await redis.execute("HGETALL", keys.counts(11)) == {b"11": b"1"}
    # the dedup buckets: the only keys with a TTL, gone when the window after next begins
    buckets = await all_keys(backends, keys.seen_pattern())
    assert len(buckets) == 3  # users 1 and 2 of post 10, user 1 of post 11: one window
    for bucket in buckets:
        assert 86400 <= await redis.execute("TTL", bucket) <= 2 * 86400
    for key in (keys.counts(10), keys.counts(11), keys.layout):
        assert await redis.execute("TTL", key) == -1


async def test_dedup_expires_after_the_ttl(backends: Backends) -> None:
    store = store_of(backends, ttl=1)
    assert (await store.record([(5, 50)]))[0] == [True]
    assert (await store.record([(5, 50)]))[0] == [False]

    async def counts_again() -> bool:
        return (await store.record([(5, 50)]))[0] == [True]

    await wait_until(counts_again, timeout=5)  # Redis' clock moved a TTL on
    assert await backends.redis.execute("HGET", backends.keys.counts(50), "50") == b"2"


async def test_two_racing_ingesters_count_a_view_once(
    backends: Backends, settings: Settings
) -> None:
    async with open_backends(settings) as other:
        a, b = store_of(backends), store_of(other)
        results: list[list[bool]] = []

        async def ingest(store: ViewStore, views: list[tuple[int, int]]) -> None:
            results.append((await store.record(views))[0])

        views = [(u, 7) for u in range(1, 501)]
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(ingest, a, views)
                nursery.start_soon(ingest, b, list(reversed(views)))
    assert sum(sum(r) for r in results) == 500
    assert await backends.redis.execute("HGET", backends.keys.counts(7), "7") == b"500"


async def test_sync_writes_counts_and_clears_exactly_what_it_wrote(backends: Backends) -> None:
    await create_posts(backends, 1, 2)
    store = store_of(backends)
    await store.record([(u, 1) for u in range(1, 6)] + [(u, 2) for u in range(1, 3)])
    report = await sync_of(backends).run_once()
    assert (report.batches, report.posts, report.views) == (2, 2, 7)  # a batch per partition
    assert await pg_view_counts(backends) == {1: 5, 2: 2}
    synced_at = await last_synced(backends.redis, backends.keys)  # for every process to see
    assert synced_at is not None and abs(synced_at - time.time()) < 60
    assert await redis_leftovers(backends) == []
    # the dedup flags stay: the same users viewing again are still duplicates
    assert (await store.record([(1, 1)]))[0] == [False]


async def test_sync_in_chunks(backends: Backends) -> None:
    await create_posts(backends, *range(1, 101))
    await store_of(backends).record([(u, p) for p in range(1, 101) for u in range(1, p % 5 + 2)])
    report = await sync_of(backends, chunk_size=7).run_once()
    # 64 partitions of one or two posts each: one batch per partition holding up to 7 posts
    assert report.batches == 64 and report.posts == 100
    expected = {p: p % 5 + 1 for p in range(1, 101)}
    assert await pg_view_counts(backends) == expected
    assert await redis_leftovers(backends) == []


async def test_views_of_a_post_with_no_row_are_kept_and_folded_in_later(
    backends: Backends,
) -> None:
    store = store_of(backends)
    await store.record([(1, 99), (2, 99), (3, 99)])
    await sync_of(backends).run_once()
    assert await redis_leftovers(backends) == []  # not stuck in its partition
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
    batch = "00000000-0000-0000-0000-000000000001"
    await store.take_batch(1, batch, 100)
    assert await total() == 10  # in flight
    await store.record([(u, 1) for u in range(11, 14)])
    assert await total() == 13  # in flight + new counter
    deltas = await store.batch_contents((1, batch))
    assert await ledger.apply_batch(pg, batch, deltas)
    assert await total() == 13  # applied but not yet forgotten: not counted twice
    assert not await ledger.apply_batch(pg, batch, deltas)
    await store.forget_batch((1, batch))
    assert await total() == 13
    await sync_of(backends).run_once()
    assert await total() == 13
    assert await pg_view_counts(backends) == {1: 13}


async def test_two_syncers_without_the_lock_never_apply_twice(
    backends: Backends, settings: Settings
) -> None:
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
    first, second = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
    await store.take_batch(3, first, 10)
    # a crashed syncer applied it but did not forget it
    deltas = await store.batch_contents((3, first))
    await ledger.apply_batch(backends.postgres, first, deltas)
    await store.record([(3, 3)])
    await store.take_batch(3, second, 10)  # crashed before COMMIT
    report = await sync_of(backends).run_once()
    assert report.recovered_batches == 1 and report.skipped_batches == 1
    assert await pg_view_counts(backends) == {3: 3}
    assert await redis_leftovers(backends) == []


async def test_dedup_buckets_split_and_still_find_every_pair(backends: Backends) -> None:
    """5000 viewers of one post overflow its buckets, which split (kaleido.views.dedup); every
    pair must still be found where the split put it, by this process and by a fresh one."""
    store = store_of(backends)
    views = [(u * 7 + 3, 70) for u in range(5000)]  # low bits of user ids spread unevenly
    for i in range(0, len(views), 700):
        assert all((await store.record(views[i : i + 700]))[0])
    assert (await store.record(views))[0] == [False] * len(views)
    assert (await store_of(backends).record(views))[0] == [False] * len(views)
    keys = backends.keys
    buckets = await all_keys(backends, keys.seen_pattern())
    assert len(buckets) > 5000 // BUCKET_CAP  # it split
    sizes = await backends.redis.pipeline([("HLEN", b) for b in buckets])
    assert sum(sizes) == 5000 and max(sizes) <= BUCKET_CAP + 1
    encodings = await backends.redis.pipeline([("OBJECT", "ENCODING", b) for b in buckets])
    assert set(encodings) == {b"listpack"}
    assert (await read_total(store, backends.postgres, 70)).views == 5000


@pytest.mark.redis_kinds("single")  # ACL users are set per node: this one sets them on one
async def test_view_counting_needs_no_key_outside_its_prefix(
    backends: Backends, settings: Settings
) -> None:
    """As a Redis ACL user allowed only keys under the prefix: record, read, sync."""
    await backends.redis.execute(
        "ACL", "SETUSER", "tenant", "reset", "on", ">tenant-secret", "~tenant7:*", "+@all"
    )
    try:
        hosts = str(settings.redis_url).partition("://")[2].rpartition("@")[2]
        url = f"redis://tenant:tenant-secret@{hosts}"  # instead of the test stack's admin
        limited = with_settings(settings, redis_url=url, key_prefix="tenant7:")
        async with open_backends(limited) as tenant:
            await create_posts(tenant, 5)
            store = store_of(tenant)
            views = [(u, 5) for u in range(1, 400)] + [(u, 6) for u in range(1, 3)]
            assert all((await store.record(views))[0])
            assert (await read_total(store, tenant.postgres, 5)).views == 399
            await sync_of(tenant).run_once()
            assert await pg_view_counts(tenant) == {5: 399, 6: 2}
            assert (await store.record(views))[0] == [False] * len(views)
        assert all(k.startswith(b"tenant7:") for k in await backends.redis.execute("KEYS", "*"))
    finally:
        await backends.redis.execute("ACL", "DELUSER", "tenant")


@pytest.mark.redis_kinds("single")  # the cluster path, checked without a cluster
async def test_on_a_cluster_every_script_call_touches_one_slot(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the store calls Redis Cluster: a record, move or snapshot call's declared keys all
    hash to one slot (checked with redis-py's own slot function), and counting is unchanged."""
    redis = backends.redis
    monkeypatch.setattr(redis, "is_cluster", True)
    slots: list[set[int]] = []
    run_script, run_scripts = redis.run_script, redis.run_scripts

    async def one(script, keys, args):  # type: ignore[no-untyped-def]
        slots.append({key_slot(k if isinstance(k, bytes) else k.encode()) for k in keys})
        return await run_script(script, keys, args)

    async def many(script, calls):  # type: ignore[no-untyped-def]
        for keys, _ in calls:
            slots.append({key_slot(k if isinstance(k, bytes) else k.encode()) for k in keys})
        return await run_scripts(script, calls)

    monkeypatch.setattr(redis, "run_script", one)
    monkeypatch.setattr(redis, "run_scripts", many)
    await create_posts(backends, *range(1, 40))
    store = store_of(backends)
    views = [(u, p) for p in range(1, 40) for u in range(1, 60)]  # splits on the way
    assert all((await store.record(views))[0])
    assert (await store.record(views))[0] == [False] * len(views)
    assert (await read_total(store, backends.postgres, 7)).views == 59
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {p: 59 for p in range(1, 40)}
    assert len(slots) > 39 and all(len(s) == 1 for s in slots)


async def test_a_post_created_by_anyone_folds_in_its_backlog_alone(backends: Backends) -> None:
    """The fold is a trigger on posts: a row inserted by the Kaleidoscope backend itself counts
    its waiting views too, and nothing else in the backlog is touched."""
    store = store_of(backends)
    await store.record([(1, 71), (2, 71), (1, 72)])
    await sync_of(backends).run_once()
    await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (71, 5)")
    assert await pg_view_counts(backends) == {71: 2, 72: 1}  # 72 still waits in the backlog
    backlog = await backends.postgres.fetch("SELECT post_id FROM post_view_backlog")
    assert [r["post_id"] for r in backlog] == [72]
    # A sync that raced a creation left views behind: they are folded for those posts only.
    await backends.postgres.execute("INSERT INTO post_view_backlog (post_id, views) VALUES (71, 4)")
    await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (73, 5)")
    await backends.postgres.execute("INSERT INTO post_view_backlog (post_id, views) VALUES (73, 9)")
    await ledger.fold_backlog(backends.postgres, [71])
    assert await pg_view_counts(backends) == {71: 6, 72: 1, 73: 9}
    left = await backends.postgres.fetch("SELECT post_id FROM post_view_backlog ORDER BY post_id")
    assert [r["post_id"] for r in left] == [72, 73]


async def test_views_of_posts_that_never_exist_are_bounded(backends: Backends) -> None:
    pg = backends.postgres
    await pg.execute(
        "INSERT INTO post_view_backlog (post_id, views, updated_at) "
        "SELECT g, 2, now() - g * interval '1 hour' FROM generate_series(1, 10) g"
    )
    await pg.execute(
        "INSERT INTO post_view_backlog (post_id, views, updated_at) VALUES (99, 5, now() - "
        "interval '8 days')"
    )
    pruned = await ledger.prune_backlog(pg, max_age_days=7, max_posts=6)
    # Post 99 is too old; of the other ten the four oldest go beyond the cap of six.
    assert (pruned.posts, pruned.views, pruned.left) == (5, 13, 6)
    left = await pg.fetch("SELECT post_id FROM post_view_backlog ORDER BY post_id")
    assert [r["post_id"] for r in left] == [1, 2, 3, 4, 5, 6]
    report = await sync_of(backends).run_once()  # the syncer applies the same bounds
    assert (report.backlog_dropped_views, report.backlog_posts) == (0, 6)


async def test_a_counter_that_is_not_a_number_does_not_stall_the_sync(backends: Backends) -> None:
    """A counter written by hand as garbage stays where it is (readers see it); the sync moves
    the others and ends, instead of taking the garbage again and again."""
    await create_posts(backends, 1, 65)
    store = store_of(backends)
    await store.record([(1, 65), (2, 65)])
    await backends.redis.execute("HSET", backends.keys.counts(1), "1", "abc")
    with trio.fail_after(10):
        await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {65: 2}
    assert await backends.redis.execute("HGETALL", backends.keys.counts(1)) == {b"1": b"abc"}
