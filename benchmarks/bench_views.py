"""Ingest throughput: views/s through ViewTracker into Redis, beside two baselines in the same run.

- naive: what the original backend does per view: EXISTS, SET … EX, INCR, SADD, each awaited;
- Redis' own limit: the same per-view work done by a Lua loop inside Redis (no client at all).

Workload: Zipf-distributed posts, 10% repeated (user, post) pairs.
Run: `python -m benchmarks.bench_views [--views N]`.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import trio

from actors.view_ingester import ViewIngester
from kaleido.gateways import Backends, open_backends
from kaleido.metrics import Metrics
from kaleido.views.store import ViewStore
from kaleido.views.tracker import Item, ViewTracker

from .common import print_table, private_stack, save

POSTS = 100_000
NAIVE_VIEWS = 20_000
LUA_LIMIT = """
local n, ttl = tonumber(ARGV[1]), ARGV[2]
for i = 1, n do
  local user, post = i, (i * 7919) % 100000 + 1
  if redis.call('SET', 'lua:user:view:' .. user .. ':' .. post, '1', 'NX', 'EX', ttl) then
    redis.call('INCR', 'lua:post:views:' .. post)
    redis.call('SADD', 'lua:pending:views', post)
  end
end
return n
"""


def workload(n: int, seed: int = 7) -> list[tuple[int, int]]:
    """n views: Zipf(1.1)-like posts, about 10% exact repeats of an earlier (user, post)."""
    rng = random.Random(seed)
    weights = [1 / (rank**1.1) for rank in range(1, POSTS + 1)]
    posts = rng.choices(range(1, POSTS + 1), weights=weights, k=n)
    views: list[tuple[int, int]] = []
    for i, post in enumerate(posts):
        if views and rng.random() < 0.10:
            views.append(views[rng.randrange(len(views))])
        else:
            views.append((i + 1, post))
    return views


async def tracker_rate(backends: Backends, views: list[tuple[int, int]]) -> dict[str, float]:
    store = ViewStore(backends.redis, backends.keys)
    send, receive = trio.open_memory_channel[Item](len(views) + 1)
    tracker = ViewTracker(send)
    metrics = Metrics()
    ingester = ViewIngester(store, receive, metrics)
    round_trips = backends.redis.round_trips
    async with trio.open_nursery() as nursery:
        await nursery.start(ingester.run)
        start = time.perf_counter()
        record = tracker.record
        for user, post in views:
            record(user, post)
        recorded = time.perf_counter()
        tracker.close()
    done = time.perf_counter()
    counted = metrics.views.labels("counted")._value.get()
    assert counted == len(set(views)), f"counted {counted}, expected {len(set(views))} unique"
    return {
        "views_per_s": len(views) / (done - start),
        "record_us": (recorded - start) / len(views) * 1e6,
        "round_trips": backends.redis.round_trips - round_trips,
    }


async def naive_rate(backends: Backends, views: list[tuple[int, int]]) -> float:
    redis = backends.redis
    start = time.perf_counter()
    for user, post in views:
        key = f"naive:user:view:{user}:{post}"
        if not await redis.execute("EXISTS", key):
            await redis.execute("SET", key, "1", "EX", 86400)
            await redis.execute("INCR", f"naive:post:views:{post}")
            await redis.execute("SADD", "naive:pending:views", post)
    return len(views) / (time.perf_counter() - start)


async def lua_limit_rate(backends: Backends, n: int) -> float:
    start = time.perf_counter()
    await backends.redis.execute("EVAL", LUA_LIMIT, 0, n, 86400)
    return n / (time.perf_counter() - start)


async def main(n: int) -> dict[str, Any]:
    views = workload(n)
    with private_stack() as (_, settings):
        async with open_backends(settings) as backends:
            tracked = await tracker_rate(backends, views)
            await backends.redis.execute("FLUSHALL")
            naive = await naive_rate(backends, views[:NAIVE_VIEWS])
            await backends.redis.execute("FLUSHALL")
            limit = await lua_limit_rate(backends, n)
    figures = {
        "views": n,
        "tracker_views_per_s": round(tracked["views_per_s"]),
        "record_us": round(tracked["record_us"], 2),
        "redis_round_trips": tracked["round_trips"],
        "naive_views_per_s": round(naive),
        "redis_lua_limit_views_per_s": round(limit),
        "ratio_vs_naive": round(tracked["views_per_s"] / naive, 1),
        "ratio_vs_redis_limit": round(tracked["views_per_s"] / limit, 2),
    }
    print_table(
        f"Ingest: {n:,} views, Zipf posts, 10% duplicates",
        [
            ("ViewTracker → Redis", f"{figures['tracker_views_per_s']:,}/s", ""),
            ("  record() cost", f"{figures['record_us']} µs", ""),
            ("  Redis round trips", f"{figures['redis_round_trips']:,}", ""),
            (
                "naive per-view (4 awaited cmds)",
                f"{figures['naive_views_per_s']:,}/s",
                f"{figures['ratio_vs_naive']}× faster",
            ),
            (
                "Redis limit (Lua loop in Redis)",
                f"{figures['redis_lua_limit_views_per_s']:,}/s",
                f"{figures['ratio_vs_redis_limit']}× of it",
            ),
        ],
    )
    print(f"wrote {save('views', figures)}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=1_000_000)
    trio.run(main, parser.parse_args().views)
