"""Property: random interleavings of views (through Redis, or through the journal as while
Redis is down), time moving (repeats just before and just after the TTL, across windows),
partial sync steps, journal replays and reads always agree with a ground-truth model of
"a (user, post) pair counts at most once per TTL, sliding", at every read and at the end."""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaleido.gateways import Backends, open_backends
from kaleido.settings import Settings
from kaleido.views import ledger
from kaleido.views.dedup import TICKS
from kaleido.views.journal import JournalReplayer, journal_views
from kaleido.views.store import BatchRef, ViewStore
from kaleido.views.sync import ViewSync
from kaleido.views.totals import read_total

from .service_helpers import reset
from .views_helpers import create_posts, pg_view_counts, redis_leftovers

pytestmark = pytest.mark.redis_kinds("single", "cluster")

TTL = 86400
W = TTL * 1000
TICK = math.ceil(W / TICKS)
POSTS = range(1, 6)
views = st.lists(st.tuples(st.integers(1, 8), st.sampled_from(POSTS)), min_size=1, max_size=12)
# Steps of the clock (ms) around the edges that matter: a TTL, a tick, a window.
steps = st.one_of(
    st.sampled_from([1, TICK - 1, TICK, W - TICK, W - 1, W, W + 1, W + TICK, 2 * W]),
    st.integers(0, W),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("record"), views),
        st.tuples(st.just("crowd"), st.tuples(st.sampled_from(POSTS), st.integers(100, 400))),
        st.tuples(st.just("advance"), steps),
        st.tuples(st.just("again"), st.none()),  # the last batch of views, once more
        st.tuples(st.just("move"), st.tuples(st.sampled_from(POSTS), st.integers(1, 4))),
        st.tuples(st.just("apply"), st.booleans()),
        st.tuples(st.just("forget"), st.booleans()),
        st.tuples(st.just("sync"), st.integers(1, 3)),
        st.tuples(st.just("read"), st.sampled_from(POSTS)),
        st.tuples(st.just("create"), st.sampled_from(POSTS)),
        st.tuples(st.just("journal"), views),  # views taken while Redis was down
        st.tuples(st.just("replay"), st.integers(1, 4)),
    ),
    max_size=30,
)


class DedupModel:
    """The contract's dedup, with Kaleido's stated precision: a count's time is kept rounded
    up to a tick, so a repeat counts again once a TTL has passed, at most a tick late."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, int], int] = {}
        self.counted: Counter[int] = Counter()

    def view(self, pair: tuple[int, int], now: int) -> bool:
        last = self.last.get(pair)
        if last is not None and now < last + W:
            return False
        start = now // W * W
        self.last[pair] = start + min(math.ceil((now - start) / TICK) * TICK, W)
        self.counted[pair[1]] += 1
        return True


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, offset=st.one_of(st.sampled_from([W - 1, W - TICK]), st.integers(0, W - 1)))
async def test_every_read_and_the_final_counts_match_the_model(
    settings: Settings, ops: list[tuple[str, Any]], offset: int
) -> None:
    # pytest-trio runs each hypothesis example in a trio run of its own: open backends per run.
    async with open_backends(settings) as backends:
        await reset(backends)
        await run_example(backends, ops, offset)


async def run_example(backends: Backends, ops: list[tuple[str, Any]], offset: int) -> None:
    # Bucket expiry follows Redis' real clock: start the test clock after the real time, and
    # only move it forward, so that Redis expires no bucket while the model still needs it.
    now = [(int(time.time() * 1000) // W + 1) * W + offset]
    store = ViewStore(backends.redis, backends.keys, TTL, clock=lambda: now[0])
    pg = backends.postgres
    model = DedupModel()
    journaled: set[tuple[int, int]] = set()  # journal rows not replayed yet
    created: set[int] = set()
    moved: list[BatchRef] = []  # batches moved by a "crashing" syncer, oldest first
    applied: list[BatchRef] = []  # of those, the ones committed to PostgreSQL

    async def check_read(post: int) -> None:
        # A journal row counts in the total until its replay decides it (docs/views.md
        # "Redis down").
        expected = model.counted[post] + sum(1 for _, p in journaled if p == post)
        assert (await read_total(store, pg, post)).views == expected

    def replayed_all() -> None:
        for pair in sorted(journaled):
            model.view(pair, now[0])
        journaled.clear()

    batch: list[tuple[int, int]] = []
    for op, arg in ops:
        if op in ("record", "crowd", "again"):
            if op == "crowd":
                post, users = arg
                batch = [(u, post) for u in range(1, users + 1)]
            elif op == "record":
                batch = arg
            flags, _ = await store.record(batch)
            assert flags == [model.view(pair, now[0]) for pair in batch]
        elif op == "advance":
            now[0] += arg
        elif op == "move":
            post, count = arg
            partition = backends.keys.partition_of(post)
            ref: BatchRef = (partition, str(uuid.uuid4()))
            await store.take_batch(partition, ref[1], count)
            moved.append(ref)
        elif op == "apply" and moved:
            ref = moved[0] if arg else moved[-1]
            contents = await store.batch_contents(ref)
            if contents:
                await ledger.apply_batch(pg, ref[1], contents)
            applied.append(ref)
        elif op == "forget" and applied:
            ref = applied.pop(0 if arg else -1)
            await store.forget_batch(ref)
            if ref in moved:
                moved.remove(ref)
        elif op == "sync":
            await ViewSync(store, pg, chunk_size=arg).run_once()
            replayed_all()
            moved.clear()
            applied.clear()
        elif op == "read":
            await check_read(arg)
        elif op == "journal":
            await journal_views(pg, arg)
            journaled.update(arg)
        elif op == "replay":
            await JournalReplayer(store, pg, chunk=arg).replay()
            replayed_all()
        elif op == "create" and arg not in created:
            await create_posts(backends, arg)
            created.add(arg)
        for post in POSTS:
            await check_read(post)

    await ViewSync(store, pg).run_once()
    replayed_all()
    assert await pg_view_counts(backends) == {p: n for p, n in model.counted.items() if n}
    assert await redis_leftovers(backends) == []


async def test_a_repeat_counts_again_once_the_ttl_has_passed_never_before(
    backends: Backends,
) -> None:
    """The edges, one by one: just before the TTL, at it, and a tick after, across windows."""
    start = (int(time.time() * 1000) // W + 1) * W - 3  # 3 ms before a window ends
    now = [start]
    store = ViewStore(backends.redis, backends.keys, TTL, clock=lambda: now[0])

    async def counts(at: int) -> bool:
        now[0] = at
        return (await store.record([(7, 70)]))[0] == [True]

    assert await counts(start)
    window_start = start // W * W
    stored = window_start + W  # rounded up to a tick, at most to the window's end
    assert start < stored < start + TICK
    assert not await counts(start + 1)  # the same window
    assert not await counts(start + 5)  # the next window: found in the previous one
    assert not await counts(stored + W - 1)  # a TTL (less a millisecond) after it counted
    assert await counts(stored + W)  # never before the TTL, at most a tick after it
    assert not await counts(stored + W + 1)
