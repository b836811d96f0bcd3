"""View sync: pending posts/s moved from Redis into PostgreSQL by ViewSync, exactly once.

Setup: N posts with a row in PostgreSQL, each with 1-3 views counted in Redis (so N posts are
pending, spread over the layout's partitions: each partition's counts hash holds its posts).
Measured: one `ViewSync.run_once()` (the syncer's whole job under its lock: partition by
partition, chunks of up to 5000 counters moved into a batch by a Lua script, each batch applied
with one set-based statement in one transaction guarded by its batch id, then forgotten; the
next chunk moves while earlier ones are applied), checked against the expected view_count sum.

Baseline (same run): one UPDATE per post, each its own statement (autocommit), the way a
per-post sync loop writes. It is given its counters for free (read from the partitions' counts
hashes in one pipeline, deleted in another), so only the PostgreSQL side is compared; it runs
on the first NAIVE_POSTS posts.

Run alone: `python -m benchmarks.bench_sync [--quick]` (or `python -m benchmarks --only sync`).
"""

from __future__ import annotations

import random
import sys
import time

from kaleido.gateways import Backends
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync

from .common import Context, Outcome, Row, rate, run_alone

POSTS = {False: 100_000, True: 20_000}
NAIVE_POSTS = {False: 10_000, True: 3000}
RECORD_CHUNK = 5000
# What bounds the sync when it misses its target (`python -m benchmarks --profile --only sync`).
BOUND = (
    "bound by the per-batch cost: {batches} batches of ~{size:,.0f} posts (a partition's "
    "counters at most 5000 at a time), each a Redis move and a PostgreSQL transaction whose "
    "UPDATE writes a new row version per post, while the client waits "
    "(benchmarks/profiles/sync.txt: mostly epoll_wait)"
)


async def prepare(backends: Backends, posts: int, seed: int = 5) -> int:
    """Rows for `posts` posts, each with 1-3 counted views in Redis; return the views."""
    await backends.redis.execute("FLUSHALL")
    await backends.postgres.execute("TRUNCATE posts, post_view_backlog, view_sync_batches CASCADE")
    await backends.postgres.execute(
        "INSERT INTO posts (post_id, user_id) SELECT g, g FROM generate_series(1, $1::bigint) g",
        posts,
    )
    await backends.postgres.execute("VACUUM ANALYZE posts")
    rng = random.Random(seed)
    views = [(user, post) for post in range(1, posts + 1) for user in range(rng.randint(1, 3))]
    rng.shuffle(views)
    store = ViewStore(backends.redis, backends.keys)
    for start in range(0, len(views), RECORD_CHUNK):
        await store.record(views[start : start + RECORD_CHUNK])
    pending = await store.pending_size()
    assert pending == posts, f"{pending} pending, expected {posts}"
    return len(views)


async def synced_views(backends: Backends) -> int:
    return int(await backends.postgres.fetchval("SELECT coalesce(sum(view_count), 0) FROM posts"))


async def naive_sync(backends: Backends, posts: int) -> float:
    """One UPDATE statement per post (autocommit); returns posts/s."""
    keys = backends.keys
    ids = list(range(1, posts + 1))
    counters = await backends.redis.pipeline(
        [("HGET", keys.counts(keys.partition_of(p)), p) for p in ids]
    )
    postgres = backends.postgres
    start = time.perf_counter()
    for post, count in zip(ids, counters, strict=True):
        await postgres.execute(
            "UPDATE posts SET view_count = view_count + $1, updated_at = now() WHERE post_id = $2",
            int(count),
            post,
        )
    elapsed = time.perf_counter() - start
    by_partition: dict[int, list[int]] = {}
    for post in ids:
        by_partition.setdefault(keys.partition_of(post), []).append(post)
    await backends.redis.pipeline(
        [("HDEL", keys.counts(q), *members) for q, members in by_partition.items()]
    )
    return posts / elapsed


async def sync(ctx: Context) -> Outcome:
    n, naive_n = POSTS[ctx.quick], NAIVE_POSTS[ctx.quick]
    backends = ctx.backends
    views = await prepare(backends, n)
    store = ViewStore(backends.redis, backends.keys)
    syncer = ViewSync(store, backends.postgres)
    round_trips = backends.redis.round_trips
    with ctx.profiled("sync"):
        start = time.perf_counter()
        report = await syncer.run_once()
        elapsed = time.perf_counter() - start
    round_trips = backends.redis.round_trips - round_trips
    assert report.posts == n, f"synced {report.posts} posts, expected {n}"
    assert await synced_views(backends) == views, "every view is in posts.view_count once"
    assert await store.pending_size() == 0
    ours = n / elapsed

    naive_views = await prepare(backends, naive_n)
    naive = await naive_sync(backends, naive_n)
    assert await synced_views(backends) == naive_views
    assert await store.pending_size() == 0, "the baseline took every counter"
    figures = {
        "posts": n,
        "views": views,
        "seconds": round(elapsed, 3),
        "posts_per_s": round(ours),
        "views_per_s": round(views / elapsed),
        "batches": report.batches,
        "redis_round_trips": round_trips,
        "naive_posts": naive_n,
        "naive_posts_per_s": round(naive),
        "ratio_vs_naive": round(ours / naive, 1),
    }
    rows = [
        Row(
            f"sync {n // 1000}k pending posts",
            "posts/s into PostgreSQL (ViewSync.run_once)",
            rate(ours),
            f"1 UPDATE/post {rate(naive)}",
            f"{ours / naive:.0f}×",
            "≥ 100k/s",
            ours >= 100_000,
            BOUND.format(batches=report.batches, size=n / max(1, report.batches)),
        )
    ]
    notes = [
        f"{n:,} posts / {views:,} views in {elapsed:.2f} s: {report.batches} batches "
        f"({n / max(1, report.batches):,.0f} posts each, {backends.keys.partitions} partitions), "
        f"{round_trips} Redis round trips; baseline measured on {naive_n:,} posts"
    ]
    return Outcome("sync", rows, figures, notes)


if __name__ == "__main__":
    run_alone("sync", sync, "--quick" in sys.argv)
