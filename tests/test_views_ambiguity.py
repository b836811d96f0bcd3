"""The view sync's ambiguous calls: a call that ran in Redis or PostgreSQL but whose reply was
lost (a reset, a timeout) is run again by the client's retry, or its outcome is never known.
Each case injects exactly that, then checks that every view is counted once (docs/ambiguity.md).
"""

from __future__ import annotations

import attrs
import pytest
import trio

from kaleido.devstack import DevStack
from kaleido.errors import TransientError
from kaleido.gateways import Backends
from kaleido.settings import Settings
from kaleido.views import ledger, scripts
from kaleido.views.legacy import MOVE_V1, LegacyKeys
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync

from .campaign.proxied import call_of, drop_reply, through_proxy
from .views_helpers import create_posts, pg_view_counts, redis_leftovers, store_of, sync_of

BATCH = "00000000-0000-0000-0000-0000000000b1"


def sync_through(proxied: Backends, chunk_size: int = 5000) -> ViewSync:
    return ViewSync(ViewStore(proxied.redis, proxied.keys), proxied.postgres, chunk_size=chunk_size)


async def test_a_lost_move_reply_loses_no_view(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """The move's reply is lost after Redis moved the counters; views arrive before redis-py
    sends the move again (same batch id). The retry must answer the batch already made, not
    move the new counters into it (overwriting a post's share, or leaving the first move's
    posts to be forgotten unapplied)."""
    q = 1
    one, two, three = q, q + backends.keys.partitions, q + 2 * backends.keys.partitions
    await create_posts(backends, one, two, three)
    store = store_of(backends)
    await store.record([(u, one) for u in range(1, 6)] + [(u, two) for u in range(1, 4)])

    async def views_meanwhile() -> None:
        await store.record([(u, one) for u in range(100, 103)] + [(1, three)])

    async with through_proxy(stack, settings, nursery) as (proxy, proxied):
        drop_reply(proxy, call_of(scripts.MOVE_TO_BATCH, settings), views_meanwhile)
        await sync_through(proxied).run_once()
        assert proxy.dropped_replies == 1
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {one: 8, two: 3, three: 1}
    assert await redis_leftovers(backends) == []


async def test_a_lost_v1_move_reply_loses_no_view(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """The same during a takeover of a v1 Redis: the retry of v1's move would pop the next
    pending post into the same batch and answer only that one."""
    v1 = LegacyKeys()
    await create_posts(backends, 1, 2)
    await backends.redis.execute("SET", v1.post_views(1), "4")
    await backends.redis.execute("SET", v1.post_views(2), "3")
    await backends.redis.execute("SADD", v1.pending, "1", "2")
    assert (await store_of(backends).layout()).v1_counters
    async with through_proxy(stack, settings, nursery) as (proxy, proxied):
        drop_reply(proxy, call_of(MOVE_V1, settings))
        await sync_through(proxied, chunk_size=1).run_once()
        assert proxy.dropped_replies == 1
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {1: 4, 2: 3}
    assert not await backends.redis.execute("EXISTS", v1.pending, v1.batches)


@pytest.mark.redis_kinds("single", "cluster")
async def test_a_move_run_again_answers_the_batch_it_made(backends: Backends) -> None:
    """What redis-py's retry does after a lost reply, on either kind of Redis: the same move
    (same partition and batch id) again, after more views came in."""
    q = 2
    one, two = q, q + backends.keys.partitions
    await create_posts(backends, one, two)
    store = store_of(backends)
    await store.record([(u, one) for u in range(1, 4)])
    first = await store.take_batch(q, BATCH, 100)
    assert (first.taken, first.deltas, first.again) == (1, {one: 3}, False)
    await store.record([(9, one), (9, two)])
    again = await store.take_batch(q, BATCH, 100)  # the same batch, nothing more moved
    assert (again.taken, again.deltas, again.again) == (1, {one: 3}, True)
    assert await store.batch_contents((q, BATCH)) == {one: 3}
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {one: 4, two: 1}
    # run again once its batch was applied and forgotten: nothing moves into a batch whose id
    # PostgreSQL already recorded (it would skip it)
    await store.record([(10, one)])
    assert (await store.take_batch(q, BATCH, 100)).stale
    assert await redis_leftovers(backends) != []  # the new view waits for the next sync
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {one: 5, two: 1}
    assert await redis_leftovers(backends) == []


async def test_a_v1_move_run_again_answers_the_batch_it_made(backends: Backends) -> None:
    v1 = LegacyKeys()
    await create_posts(backends, 1, 2)
    await backends.redis.execute("SET", v1.post_views(1), "4")
    await backends.redis.execute("SET", v1.post_views(2), "3")
    await backends.redis.execute("SADD", v1.pending, "1", "2")
    store = store_of(backends)
    assert (await store.layout()).v1_counters
    first = await store.legacy.take_batch(BATCH, 1)
    assert first.taken == 1 and len(first.deltas) == 1 and not first.again
    again = await store.legacy.take_batch(BATCH, 1)
    assert again.again and again.deltas == first.deltas
    await sync_of(backends).run_once()
    assert await pg_view_counts(backends) == {1: 4, 2: 3}
    assert (await store.legacy.take_batch(BATCH, 1)).stale


async def test_a_lost_sync_commit_reply_applies_the_batch_once(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """The batch's transaction committed, its reply was lost: the sync fails, the batch stays
    in flight, and the next sync finds its id recorded and only forgets it."""
    await create_posts(backends, 5)
    await store_of(backends).record([(u, 5) for u in range(1, 8)])
    async with through_proxy(stack, settings, nursery, postgres=True) as (proxy, proxied):
        proxy.faults.drop_armed_by = b"view_sync_batches"
        drop_reply(proxy, b"COMMIT")
        with pytest.raises(TransientError):
            await sync_of(attrs.evolve(backends, postgres=proxied.postgres)).run_once()
        assert proxy.dropped_replies == 1
    assert await pg_view_counts(backends) == {5: 7}  # it ran
    report = await sync_of(backends).run_once()
    assert report.recovered_batches == 0 and report.skipped_batches == 1
    assert await pg_view_counts(backends) == {5: 7}
    assert await backends.postgres.fetchval("SELECT count(*) FROM view_sync_batches") == 1
    assert await redis_leftovers(backends) == []


async def test_a_batch_applied_again_folds_a_backlog_its_first_apply_left(
    backends: Backends,
) -> None:
    """The batch committed with views of a post that got its row meanwhile, and the fold after
    the commit never ran (its connection was lost): applying the batch again folds them."""
    pg = backends.postgres
    assert await ledger.apply_batch(pg, BATCH, {6: 4})  # no row yet: backlogged
    await pg.execute("ALTER TABLE posts DISABLE TRIGGER USER")  # the fold at creation, missed
    try:
        await create_posts(backends, 6)
    finally:
        await pg.execute("ALTER TABLE posts ENABLE TRIGGER USER")
    assert await pg.fetchval("SELECT views FROM post_view_backlog WHERE post_id = 6") == 4
    assert not await ledger.apply_batch(pg, BATCH, {6: 4})
    assert await pg.fetchval("SELECT view_count FROM posts WHERE post_id = 6") == 4
    assert await pg.fetchval("SELECT count(*) FROM post_view_backlog") == 0
