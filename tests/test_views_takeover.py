"""Taking over a Redis filled by layout v1 (the seed's keys): nothing lost, nothing doubled."""

from __future__ import annotations

import uuid

import attrs
import pytest

from kaleido.errors import ConfigError
from kaleido.gateways import Backends
from kaleido.keys import KeyLayout
from kaleido.views import ledger
from kaleido.views.journal import JournalReplayer
from kaleido.views.legacy import LegacyKeys
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync
from kaleido.views.totals import read_total

from .views_helpers import create_posts, pg_view_counts, store_of

V1 = LegacyKeys()
APPLIED = str(uuid.UUID(int=1))  # a v1 batch a crashed syncer committed but did not delete
IN_FLIGHT = str(uuid.UUID(int=2))  # a v1 batch moved but never applied
REPLAYED = str(uuid.UUID(int=3))  # a v1 journal replay applied to Redis, rows not deleted


async def fill_v1(backends: Backends) -> None:
    """What a v1 deployment leaves: flags, counters, pending posts, in-flight batches, and an
    interrupted journal replay. Post 1: 3 views counted (users 1-3), 2 of them still in a
    counter, 1 in a batch already applied; post 2: 2 views in a batch never applied; post 3:
    1 view in the counter, 1 replayed from the journal."""
    redis = backends.redis
    for user, post in [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (1, 3), (9, 3)]:
        await redis.execute("SET", V1.user_view(user, post), "1", "EX", 86400)
    await redis.execute("SET", V1.post_views(1), "2")
    await redis.execute("SET", V1.post_views(3), "2")
    await redis.execute("SADD", V1.pending, "1", "3")
    await redis.execute("HSET", V1.batch(APPLIED), "1", "1")
    await redis.execute("HSET", V1.batch(IN_FLIGHT), "2", "2")
    await redis.execute("SADD", V1.batches, APPLIED, IN_FLIGHT)
    await redis.execute("SET", V1.sync_epoch, "7")
    assert await ledger.apply_batch(backends.postgres, APPLIED, {1: 1})
    # user 9's view of post 3 came back from the journal: Redis took it (counter 1 above, and
    # the done marker), the journal row is still there
    await backends.postgres.execute(
        "INSERT INTO view_journal (user_id, post_id, replay_batch) VALUES (9, 3, $1)",
        uuid.UUID(REPLAYED),
    )
    await redis.execute("ZADD", V1.journal_done, 1, REPLAYED)


async def test_a_v1_redis_is_taken_over_with_exact_totals(backends: Backends) -> None:
    await create_posts(backends, 1, 2)
    await fill_v1(backends)
    store = store_of(backends)
    state = await store.layout()
    assert state.v1_counters and state.v1_flags_live(state.v1_flags_until - 1)

    async def totals() -> dict[int, int]:
        return {p: (await read_total(store, backends.postgres, p)).views for p in (1, 2, 3)}

    # post 3: its counter holds both views; the journal row is one of them, not counted again
    assert await totals() == {1: 3, 2: 2, 3: 2}
    # repeats within 24 h of v1's counts do not count again; new pairs do
    flags, _ = await store.record([(1, 1), (2, 2), (9, 3), (4, 1), (3, 2), (4, 1)])
    assert flags == [False, False, False, True, True, False]
    assert await totals() == {1: 4, 2: 3, 3: 2}

    report = await ViewSync(store, backends.postgres).run_once()
    assert report.recovered_batches == 1 and report.skipped_batches == 1
    assert await pg_view_counts(backends) == {1: 4, 2: 3, 3: 2}
    assert await totals() == {1: 4, 2: 3, 3: 2}
    assert await backends.postgres.fetchval("SELECT count(*) FROM view_journal") == 0
    # v1's counters and batches are gone, its flags stay until they expire
    redis = backends.redis
    assert not await redis.execute("EXISTS", V1.pending, V1.batches, V1.post_views(1))
    assert await redis.execute("EXISTS", V1.user_view(1, 1))
    state = await store.refresh_layout()
    assert not state.v1_counters and state.v1_flags_until > 0
    # and keep deciding, also for a process started after the takeover
    assert (await store_of(backends).record([(3, 1), (5, 1)]))[0] == [False, True]


async def test_v1_flags_stop_deciding_once_they_can_no_longer_exist(backends: Backends) -> None:
    await fill_v1(backends)
    state = await store_of(backends).layout()
    late = ViewStore(backends.redis, backends.keys, clock=lambda: state.v1_flags_until)
    assert (await late.record([(1, 1)]))[0] == [True]  # only v1 knew it; v1's time is over


async def test_a_fresh_redis_has_nothing_to_take_over(backends: Backends) -> None:
    state = await store_of(backends).layout()
    assert not state.v1_counters and state.v1_flags_until == 0


async def test_a_layout_with_other_partitions_stops_start_up(backends: Backends) -> None:
    await store_of(backends).layout()
    other = attrs.evolve(backends, keys=KeyLayout(partitions=16))
    with pytest.raises(ConfigError, match=r"KALEIDO_VIEW_PARTITIONS.* 64 partitions"):
        await store_of(other).layout()


async def test_an_interrupted_v1_replay_is_not_applied_again(backends: Backends) -> None:
    await fill_v1(backends)
    await backends.redis.execute("DEL", V1.user_view(9, 3))  # evicted: only the marker knows
    store = store_of(backends)
    report = await JournalReplayer(store, backends.postgres).replay()
    assert (report.views, report.counted) == (1, 0)
    assert (await read_total(store, backends.postgres, 3)).views == 2
