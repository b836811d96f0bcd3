"""Helpers shared by the view counting tests."""

from __future__ import annotations

import re
from collections import Counter

from kaleido.gateways import Backends
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync


def store_of(backends: Backends, ttl: int = 86400) -> ViewStore:
    return ViewStore(backends.redis, backends.keys, ttl)


def sync_of(backends: Backends, chunk_size: int = 5000) -> ViewSync:
    return ViewSync(store_of(backends), backends.postgres, chunk_size=chunk_size)


async def create_posts(backends: Backends, *post_ids: int) -> None:
    await backends.postgres.execute(
        "INSERT INTO posts (post_id, user_id) SELECT p, 1 FROM unnest($1::bigint[]) AS p",
        list(post_ids),
    )


async def pg_view_counts(backends: Backends) -> dict[int, int]:
    rows = await backends.postgres.fetch(
        "SELECT post_id, view_count AS v FROM posts WHERE view_count > 0 "
        "UNION ALL SELECT post_id, views FROM post_view_backlog"
    )
    out: dict[int, int] = {}
    for row in rows:
        out[row["post_id"]] = out.get(row["post_id"], 0) + row["v"]
    return out


# Keys that stay once everything is synced: dedup data and bookkeeping.
_KEPT = re.compile(
    rb"^(user:view:.*|view:layout|view:synced_at|view:sync:(epoch|moved)|view:journal:done|"
    rb"view:\{\d+\}:(seen:.*|dir:.*|epoch|replayed|moved))$"
)


async def all_keys(backends: Backends, pattern: str = "*") -> list[bytes]:
    """KEYS on every master (of a cluster, or the one Redis)."""
    return [k for keys in await backends.redis.on_masters("KEYS", pattern) for k in keys]


async def redis_leftovers(backends: Backends) -> list[bytes]:
    """Keys that should be gone once everything is synced (counters, batches)."""
    keys = await all_keys(backends)
    return sorted(k for k in keys if not _KEPT.match(k))


async def synced_views(backends: Backends) -> tuple[Counter[int], int]:
    """Views per post in PostgreSQL (posts and the unknown posts' backlog), and how many view
    counters and batches are still in Redis (none after a final sync)."""
    rows = await backends.postgres.fetch(
        "SELECT post_id, view_count AS v FROM posts UNION ALL "
        "SELECT post_id, views FROM post_view_backlog"
    )
    keys = backends.keys
    left = await backends.redis.pipeline(
        [("HLEN", keys.counts(q)) for q in range(keys.partitions)]
        + [("SCARD", keys.batches(q)) for q in range(keys.partitions)]
    )
    counts: Counter[int] = Counter()
    for row in rows:
        counts[row["post_id"]] += row["v"]
    return counts, sum(int(x) for x in left)
