"""The view journal: where views go while Redis is unreachable or out of memory, and how they
come back.

Writing: one INSERT … ON CONFLICT DO NOTHING per batch; the primary key (user, post) dedups the
outage's views across processes. Replaying, once Redis answers, per chunk:
  1. mark up to `chunk` unmarked rows with a new replay batch id (PostgreSQL);
  2. apply them through Redis' dedup, one call per partition, each recording the batch id in
     the partition's `replayed` set in the same atomic step (a replay already applied to a
     partition is skipped there);
  3. delete the batch's rows (PostgreSQL).
Marked rows found at the start belong to an interrupted replay and are finished first. Done
markers are kept for a day (not deleted at step 3), so a replayer that stalled between reading
a batch and applying it cannot apply it again after another finished it. The syncer replays
under its lock, so two replays rarely overlap at all. A view
seen before the outage is deduplicated by its Redis flag, so it is not counted twice; if Redis
lost its flags (restarted empty) it had lost those counters too, and counting again is right.

The protocol in full: docs/views.md "Redis down".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import attrs

from kaleido.gateways import PostgresGateway
from kaleido.views.store import ViewStore

# Views per replay chunk: one Lua call and two statements of this size stay in milliseconds.
REPLAY_CHUNK = 2000
# Interrupted replays are finished at the next sync (minutes); a day is a wide margin.
DONE_MARKER_RETENTION = 86400


async def journal_views(postgres: PostgresGateway, views: Sequence[tuple[int, int]]) -> list[bool]:
    """Store views; return for each whether it is new (a pair already journaled is not).

    Ambiguous call: when the reply is lost the ingester writes the batch again; the primary
    key keeps one row per pair (the second answer calls them duplicates, the count is exact).
    """
    users = [u for u, _ in views]
    posts = [p for _, p in views]
    rows = await postgres.fetch(
        "INSERT INTO view_journal (user_id, post_id) "
        "SELECT DISTINCT u, p FROM unnest($1::bigint[], $2::bigint[]) AS v(u, p) "
        "ON CONFLICT DO NOTHING RETURNING user_id, post_id",
        users,
        posts,
    )
    new = {(r["user_id"], r["post_id"]) for r in rows}
    flags = []
    for view in views:
        flags.append(view in new)
        new.discard(view)  # a repeat inside the batch is a duplicate
    return flags


@attrs.frozen
class ReplayReport:
    batches: int = 0
    views: int = 0
    counted: int = 0


@attrs.define
class JournalReplayer:
    store: ViewStore
    postgres: PostgresGateway
    chunk: int = REPLAY_CHUNK

    async def has_work(self) -> bool:
        return bool(await self.postgres.fetchval("SELECT EXISTS (SELECT 1 FROM view_journal)"))

    async def replay(self) -> ReplayReport:
        """Replay the whole journal into Redis (Redis and PostgreSQL must both answer)."""
        report = ReplayReport()
        await self._forget_finished()
        interrupted = await self.postgres.fetch(
            "SELECT DISTINCT replay_batch FROM view_journal WHERE replay_batch IS NOT NULL"
        )
        # A mark or a delete whose reply was lost: marked rows are found here and finished
        # (their partitions' `replayed` sets skip what was applied); a second delete is a no-op.
        for row in interrupted:
            report = self._add(report, *await self._finish(str(row["replay_batch"])))
        while True:
            batch_id = str(uuid.uuid4())
            marked = await self.postgres.fetchval(
                "WITH chosen AS (SELECT user_id, post_id FROM view_journal "
                " WHERE replay_batch IS NULL LIMIT $2 FOR UPDATE SKIP LOCKED) "
                "UPDATE view_journal j SET replay_batch = $1 FROM chosen "
                "WHERE j.user_id = chosen.user_id AND j.post_id = chosen.post_id "
                "RETURNING 1",
                uuid.UUID(batch_id),
                self.chunk,
            )
            if not marked:
                return report
            report = self._add(report, *await self._finish(batch_id))

    async def _finish(self, batch_id: str) -> tuple[int, int]:
        rows = await self.postgres.fetch(
            "SELECT user_id, post_id FROM view_journal WHERE replay_batch = $1",
            uuid.UUID(batch_id),
        )
        views = [(row["user_id"], row["post_id"]) for row in rows]
        if await self._applied_by_v1(batch_id):
            counted = 0  # an interrupted replay of the v1 layout, already in its counters
        else:
            counted = await self.store.replay(batch_id, views)
        await self.postgres.execute(
            "DELETE FROM view_journal WHERE replay_batch = $1", uuid.UUID(batch_id)
        )
        return len(rows), counted

    async def _applied_by_v1(self, batch_id: str) -> bool:
        if not (await self.store.layout()).v1_counters:
            return False
        legacy = self.store.legacy
        return bool(await legacy.redis.execute("ZSCORE", legacy.keys.journal_done, batch_id))

    async def _forget_finished(self) -> None:
        """Drop done-markers older than a day: their batches were finished long ago."""
        cutoff = int(time.time()) - DONE_MARKER_RETENTION
        keys = self.store.keys
        await self.store.redis.pipeline(
            [("ZREMRANGEBYSCORE", keys.replayed(q), "-inf", cutoff) for q in range(keys.partitions)]
        )

    @staticmethod
    def _add(report: ReplayReport, views: int, counted: int) -> ReplayReport:
        return ReplayReport(report.batches + 1, report.views + views, report.counted + counted)
