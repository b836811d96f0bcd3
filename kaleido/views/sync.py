"""The exactly-once sync of buffered view counters from Redis to PostgreSQL.

Under `view:batch:lock` (the protocol: docs/views.md "Syncing"):
  1. finish every in-flight batch a crashed or stalled syncer left behind;
  2. one Lua script moves a chunk of one partition's counters into a new batch (a hash keyed
     by a UUID, in that partition); run again for that UUID (a lost reply) it moves nothing
     more and answers the batch it made (kaleido.views.moves);
  3. one PostgreSQL transaction records the batch id and applies all its deltas, or applies
     nothing if the id is already recorded;
  4. the batch is deleted from Redis; repeat from 2 until no partition has counters.
A crash between any two steps leaves either counters (not yet moved), a batch not applied
(re-applied by step 1), or a batch applied but not deleted (step 1 finds its id and skips it).
Steps 2 and 3 overlap: the next chunk is moved while the ones before are being applied.
During a takeover of a v1 Redis, v1's counters and batches go through the same steps first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import attrs
import trio

from kaleido import failpoints
from kaleido.concurrency import raise_unwrapped
from kaleido.errors import BackendError, RedisOutOfMemory
from kaleido.gateways import PostgresGateway
from kaleido.logs import get_logger
from kaleido.views import ledger
from kaleido.views.journal import JournalReplayer, ReplayReport
from kaleido.views.layout import v1_counters_drained
from kaleido.views.model import SyncReport
from kaleido.views.store import BatchRef, ViewStore

log = get_logger("kaleido.views.sync")


# Posts per batch: one PostgreSQL statement of this many rows takes tens of milliseconds, and
# a reader that races a move retries, so batches stay short.
CHUNK_SIZE = 5000
# Batches applied at once (each in its own transaction and connection), while the next moves.
APPLY_CONCURRENCY = 2
# Views of posts with no row wait in post_view_backlog for their post; not longer than this,
# and only this many posts' worth (docs/views.md "Views of posts that do not exist").
BACKLOG_MAX_AGE_DAYS = 7.0
BACKLOG_MAX_POSTS = 100_000
# Applied batch ids (view_sync_batches) are kept this long after their batch left Redis: far
# beyond any sync run, so only a syncer stalled for a week could meet a forgotten batch id.
BATCH_RETENTION_DAYS = 7.0


@attrs.define
class ViewSync:
    store: ViewStore
    postgres: PostgresGateway
    chunk_size: int = CHUNK_SIZE
    apply_concurrency: int = APPLY_CONCURRENCY
    # Hears (batches, posts) applied so far after each batch: `kaleido sync` shows progress.
    progress: Callable[[int, int], None] | None = None

    async def run_once(self) -> SyncReport:
        """Replay the view journal, then sync everything pending. The caller holds the lock."""
        replayer = JournalReplayer(self.store, self.postgres)
        replayed = await self._replay(replayer)
        report = await self._sync()
        if replayed is None:  # Redis was full: the sync freed memory, try once more
            replayed = await self._replay(replayer)
        try:  # for every process's staleness alert; the sync itself is done either way
            await self.store.mark_synced(time.time())
        except BackendError as exc:
            log.warning("sync.unmarked", error=str(exc))
        return attrs.evolve(report, journal_views=replayed.views if replayed else 0)

    async def _replay(self, replayer: JournalReplayer) -> ReplayReport | None:
        if not await replayer.has_work():
            return ReplayReport()
        try:
            replayed = await replayer.replay()
        except RedisOutOfMemory as exc:
            log.warning("sync.journal_replay_deferred", error=str(exc))
            return None
        log.info("sync.journal_replayed", **attrs.asdict(replayed))
        return replayed

    async def _sync(self) -> SyncReport:
        report = SyncReport()
        for ref in await self.store.in_flight_batches():
            report = self._add(report, *await self._finish(ref), recovered=True)
        # Moving chunks (Redis) overlaps applying the ones before (PostgreSQL), up to
        # APPLY_CONCURRENCY at once on their own connections. Batches are disjoint unless a
        # post got views between two moves; then the second UPDATE waits for the first's row
        # lock (both lock in post id order). A crash may leave several in-flight batches: the
        # first step of the next run finishes them all.
        finished: list[tuple[bool, int, int]] = []
        slots = trio.Semaphore(self.apply_concurrency)

        async def finish(ref: BatchRef, deltas: dict[int, int]) -> None:
            try:
                finished.append(await self._finish(ref, deltas))
            finally:
                slots.release()
            if self.progress is not None:
                self.progress(len(finished), sum(posts for _, posts, _ in finished))

        try:
            async with trio.open_nursery() as nursery:
                async with aclosing(self._batches()) as batches:
                    async for ref, deltas in batches:
                        await slots.acquire()
                        nursery.start_soon(finish, ref, deltas)
        except BaseExceptionGroup as group:
            raise_unwrapped(group)
        for applied, posts, views in finished:
            report = self._add(report, applied, posts, views, recovered=False)
        pruned = await ledger.prune_backlog(self.postgres, BACKLOG_MAX_AGE_DAYS, BACKLOG_MAX_POSTS)
        if pruned.posts:
            log.warning("sync.backlog_pruned", posts=pruned.posts, views=pruned.views)
        forgotten = await self._forget_old_batches()
        await self._end_takeover()
        return attrs.evolve(
            report,
            backlog_dropped_views=pruned.views,
            backlog_posts=pruned.left,
            forgotten_batches=forgotten,
        )

    async def _forget_old_batches(self) -> int:
        """Prune view_sync_batches: rows older than BATCH_RETENTION_DAYS whose batch is no
        longer in Redis (read after this run finished its own batches, under the lock, so
        only a stalled syncer's batch can still be there, and it is kept)."""
        in_flight = [batch_id for _, batch_id in await self.store.in_flight_batches()]
        return await ledger.prune_batches(self.postgres, BATCH_RETENTION_DAYS, in_flight)

    async def _end_takeover(self) -> None:
        """Once v1's counters and batches are all synced, stop reading v1 keys."""
        store = self.store
        if (await store.layout()).v1_counters and await store.legacy.is_drained():
            await v1_counters_drained(store.redis, store.keys)
            await store.refresh_layout()
            log.info("sync.v1_counters_drained")

    async def _batches(self) -> AsyncGenerator[tuple[BatchRef, dict[int, int]], None]:
        """Move chunks of pending counters into new batches until none is left: v1's first
        (during a takeover), then partition by partition."""
        store = self.store
        if (await store.layout()).v1_counters:
            while True:
                batch_id = str(uuid.uuid4())
                moved = await store.legacy.take_batch(batch_id, self.chunk_size)
                if moved.taken == 0 and not moved.stale:
                    break
                if moved.deltas:
                    failpoints.hit("sync.after_move")
                    yield (None, batch_id), moved.deltas
        for partition in await store.partitions_pending():
            while True:
                batch_id = str(uuid.uuid4())
                moved = await store.take_batch(partition, batch_id, self.chunk_size)
                # A stale move (its first run's batch was finished by another syncer while
                # the reply was lost) moved nothing: try again with a new id.
                if moved.stale:
                    continue
                # Nothing moved: no counter left, or only counters that are not positive
                # integers (they stay, and would be taken again and again).
                if not moved.deltas:
                    break
                failpoints.hit("sync.after_move")
                yield (partition, batch_id), moved.deltas

    async def _finish(
        self, ref: BatchRef, deltas: dict[int, int] | None = None
    ) -> tuple[bool, int, int]:
        """Apply (once) and delete one batch; return (applied now, posts, views)."""
        partition, batch_id = ref
        if deltas is None:
            deltas = await self.store.batch_contents(ref)
        applied = bool(deltas) and await ledger.apply_batch(self.postgres, batch_id, deltas)
        failpoints.hit("sync.after_commit")
        await self.store.forget_batch(ref)
        failpoints.hit("sync.after_forget")
        log.info(
            "sync.batch",
            batch_id=batch_id,
            partition="v1" if partition is None else partition,
            posts=len(deltas),
            views=sum(deltas.values()),
            applied=applied,
        )
        return applied, len(deltas), sum(deltas.values())

    @staticmethod
    def _add(
        report: SyncReport, applied: bool, posts: int, views: int, *, recovered: bool
    ) -> SyncReport:
        if not applied:
            return attrs.evolve(report, skipped_batches=report.skipped_batches + 1)
        return attrs.evolve(
            report,
            batches=report.batches + 1,
            posts=report.posts + posts,
            views=report.views + views,
            recovered_batches=report.recovered_batches + int(recovered),
        )
