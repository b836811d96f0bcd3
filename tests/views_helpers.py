"""Helpers shared by the view counting tests."""

from __future__ import annotations

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


async def redis_leftovers(backends: Backends) -> list[bytes]:
    """Keys that should be gone once everything is synced (dedup flags excluded)."""
    keys = await backends.redis.execute("KEYS", "*")
    bookkeeping = {b"view:sync:epoch", b"view:journal:done"}
    return sorted(k for k in keys if not k.startswith(b"user:view:") and k not in bookkeeping)
