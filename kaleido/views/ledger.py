"""The PostgreSQL side of view counting: apply a batch once, read a post's synced views."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import attrs

from kaleido.gateways import PostgresGateway

# One statement applies the whole batch: posts that have a row get their view_count raised;
# the others go to post_view_backlog (their ids are returned), folded into view_count when the
# post is created.
_APPLY_DELTAS = """
WITH delta AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS d(post_id, views)
), updated AS (
    UPDATE posts p SET view_count = p.view_count + delta.views, updated_at = now()
    FROM delta WHERE p.post_id = delta.post_id
    RETURNING p.post_id
)
INSERT INTO post_view_backlog AS b (post_id, views)
SELECT delta.post_id, delta.views FROM delta
WHERE delta.post_id NOT IN (SELECT post_id FROM updated)
ON CONFLICT (post_id) DO UPDATE SET views = b.views + excluded.views, updated_at = now()
RETURNING b.post_id
"""

# The backlog rows of these posts whose post now exists: a post created while its views were
# being synced, whose own fold (the trigger of migration 0005) ran before those views reached
# the backlog.
_FOLD_BACKLOG = """
WITH folded AS (
    DELETE FROM post_view_backlog b USING posts p
    WHERE b.post_id = ANY($1::bigint[]) AND b.post_id = p.post_id
    RETURNING b.post_id, b.views
)
UPDATE posts p SET view_count = p.view_count + folded.views, updated_at = now()
FROM folded WHERE p.post_id = folded.post_id
"""

# Views of posts that never got a row are kept for a while, not forever: rows older than $1
# days go, and beyond $2 rows the oldest go. Returns what was dropped and what is left.
_PRUNE_BACKLOG = """
WITH ranked AS (
    SELECT post_id, updated_at,
           row_number() OVER (ORDER BY updated_at DESC, post_id) AS newest
    FROM post_view_backlog
), dropped AS (
    DELETE FROM post_view_backlog b USING ranked r
    WHERE b.post_id = r.post_id
      AND (r.updated_at < now() - $1 * interval '1 day' OR r.newest > $2)
    RETURNING b.views
)
SELECT (SELECT count(*) FROM dropped) AS posts,
       (SELECT coalesce(sum(views), 0) FROM dropped) AS views,
       (SELECT count(*) FROM post_view_backlog) - (SELECT count(*) FROM dropped) AS left_posts
"""

# A post's views in PostgreSQL and which of the given sync batches are applied, in one
# snapshot. Journal rows count unless their replay batch ($3) is already in Redis.
_READ_SYNCED = """
SELECT
    coalesce((SELECT view_count FROM posts WHERE post_id = $1), 0)
      + coalesce((SELECT views FROM post_view_backlog WHERE post_id = $1), 0)
      + (SELECT count(*) FROM view_journal WHERE post_id = $1
         AND (replay_batch IS NULL OR NOT replay_batch = ANY($3::uuid[]))) AS views,
    coalesce((SELECT array_agg(batch_id::text) FROM view_sync_batches
              WHERE batch_id = ANY($2::uuid[])), '{}') AS applied
"""


async def apply_batch(postgres: PostgresGateway, batch_id: str, deltas: Mapping[int, int]) -> bool:
    """Apply the batch's deltas in one transaction unless it was applied before.

    Returns False when the batch id was already recorded (nothing applied now). Two callers
    racing on one batch serialise on its primary key: the second finds it and applies nothing.

    Ambiguous call: when the COMMIT's reply is lost, the caller cannot know whether the batch
    was applied. It keeps the batch in Redis and the next sync calls this again: the recorded
    id makes that second call apply nothing. The fold that follows the transaction is run
    again then too (it only moves backlog rows of posts that exist, so twice is once), in case
    the first call's fold never ran.
    """
    posts = sorted(deltas)  # in key order: the UPDATE visits the index and heap in order
    views = [deltas[p] for p in posts]
    async with postgres.transaction() as tx:
        inserted = await tx.fetchval(
            "INSERT INTO view_sync_batches (batch_id, posts, views) VALUES ($1, $2, $3) "
            "ON CONFLICT (batch_id) DO NOTHING RETURNING true",
            uuid.UUID(batch_id),
            len(posts),
            sum(views),
        )
        if inserted:
            backlogged = [row["post_id"] for row in await tx.fetch(_APPLY_DELTAS, posts, views)]
    if not inserted:
        await fold_backlog(postgres, posts)
        return False
    if backlogged:
        await fold_backlog(postgres, backlogged)
    return True


async def fold_backlog(postgres: PostgresGateway, post_ids: list[int]) -> None:
    """Fold the backlog of these posts into their view_count where their row exists now."""
    await postgres.execute(_FOLD_BACKLOG, post_ids)


@attrs.frozen
class BacklogPruned:
    posts: int  # rows dropped
    views: int  # their views
    left: int  # rows kept


async def prune_backlog(
    postgres: PostgresGateway, max_age_days: float, max_posts: int
) -> BacklogPruned:
    """Drop the backlog of posts that have had no row for `max_age_days`, and the oldest rows
    beyond `max_posts` (views of posts that do not exist cannot grow without bound)."""
    row = await postgres.fetchrow(_PRUNE_BACKLOG, max_age_days, max_posts)
    return BacklogPruned(int(row["posts"]), int(row["views"]), int(row["left_posts"]))


async def read_synced(
    postgres: PostgresGateway,
    post_id: int,
    batch_ids: list[str],
    replayed: list[str] | None = None,
) -> tuple[int, set[str]]:
    """(views in PostgreSQL for the post, the subset of `batch_ids` already applied).

    PostgreSQL's views: synced, backlog, and journal rows not in a `replayed` batch.
    """
    row = await postgres.fetchrow(
        _READ_SYNCED,
        post_id,
        [uuid.UUID(b) for b in batch_ids],
        [uuid.UUID(b) for b in replayed or []],
    )
    return int(row["views"]), set(row["applied"])
