"""The outbox relay: publishes committed announcements (kaleido.outbox) to Redis.

Kicked by whoever commits an announcement in this process, and every `interval` in any case
(rows committed by another process, or left by one that died). Each pass takes the outbox in
batches until it is empty; a row is deleted once Redis has its entry, and a row published but
not deleted (a crash, a lost reply) is found marked when taken again, so an announcement goes
out once however often it is retried.

How errors behave: Redis or PostgreSQL down (or any backend error) is counted and retried with
capped backoff; the rows wait in PostgreSQL meanwhile. On shutdown one last pass publishes what
is committed, bounded by the drain's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import attrs
import trio

from kaleido import failpoints
from kaleido.backoff import Backoff
from kaleido.errors import BackendError
from kaleido.logs import get_logger
from kaleido.metrics import Metrics
from kaleido.outbox import Announcement, Announcer, Backlog, OutboxStore

log = get_logger("actors.outbox_relay")

# Rows of other processes (or of a dead one) are picked up within this many seconds.
POLL_INTERVAL = 1.0
# Rows per transaction: one pipelined round trip to Redis each.
BATCH_SIZE = 256
# Marks left by a relay that died between deleting rows and dropping marks are swept this often.
SWEEP_INTERVAL = 600.0
# The backlog's size and age are read for /metrics at most this often.
BACKLOG_INTERVAL = 5.0
RETRY_BASE = 0.1
RETRY_CAP = 5.0


@attrs.define
class RelayStats:
    published: int = 0  # entries added to their streams
    repeated: int = 0  # rows found published before (a retry after a crash or lost reply)
    skipped: int = 0  # rows with nothing left to publish (a superseded aggregation claim)
    failures: int = 0
    backlog: Backlog | None = None  # as last read
    backlog_read_at: float = 0.0


@attrs.define
class OutboxRelay:
    store: OutboxStore
    announcer: Announcer
    stopping: trio.Event
    metrics: Metrics | None = None
    interval: float = POLL_INTERVAL
    batch_size: int = BATCH_SIZE
    sweep_interval: float = SWEEP_INTERVAL
    stats: RelayStats = attrs.Factory(RelayStats)
    _kicked: trio.Event = attrs.Factory(trio.Event)

    def kick(self) -> None:
        """Publish soon: an announcement was just committed."""
        self._kicked.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        next_sweep = trio.current_time() + self.sweep_interval
        while not self.stopping.is_set():
            self._kicked = trio.Event()  # a kick during the pass asks for another pass
            wait = self.interval
            try:
                await self.publish_pending()
                if trio.current_time() >= next_sweep:
                    next_sweep = trio.current_time() + self.sweep_interval
                    await self.announcer.sweep()
                await self._read_backlog()
                backoff.reset()
            except BackendError as exc:
                self._failed(exc)
                wait = backoff.next()
            with trio.move_on_after(wait):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_set_on, self.stopping, self._kicked)
                    await self._kicked.wait()
                    nursery.cancel_scope.cancel()
        try:
            await self.publish_pending()  # what is committed goes out before the process does
        except BackendError as exc:
            self._failed(exc)

    async def publish_pending(self) -> int:
        """Publish every committed row, batch by batch; return how many rows were taken."""
        total = 0
        while True:
            done: list[Announcement] = []
            taken = await self.store.relay(self.batch_size, partial(self._publish, done))
            total += taken
            if done:  # the rows are deleted: their marks are no longer needed
                await self.announcer.forget(done)
            if taken < self.batch_size:
                return total

    async def _publish(self, done: list[Announcement], batch: Sequence[Announcement]) -> None:
        failpoints.hit("outbox.before_publish")  # crash tests: committed, not published
        added = await self.announcer.publish(batch)
        failpoints.hit("outbox.after_publish")  # crash tests: published, not deleted
        done.extend(batch)
        self._count(batch, added)

    def _count(self, batch: Sequence[Announcement], added: int) -> None:
        skipped = sum(a.fields is None for a in batch)
        self.stats.published += added
        self.stats.skipped += skipped
        self.stats.repeated += len(batch) - skipped - added
        if self.metrics is not None:
            for a in batch:
                if a.fields is not None:
                    self.metrics.announcements.labels(a.stream).inc()
        if len(batch) - skipped - added:
            log.info("outbox.repeated", rows=len(batch) - skipped - added)

    async def _read_backlog(self) -> None:
        now = time.monotonic()
        if now - self.stats.backlog_read_at < BACKLOG_INTERVAL:
            return
        backlog = await self.store.backlog()
        self.stats.backlog, self.stats.backlog_read_at = backlog, now
        if self.metrics is not None:
            self.metrics.outbox_backlog.set(backlog.rows)
            self.metrics.outbox_oldest.set(backlog.oldest_seconds)

    def _failed(self, exc: BackendError) -> None:
        self.stats.failures += 1
        if self.metrics is not None:
            self.metrics.outbox_failures.inc()
        log.warning("outbox.relay_failed", error=str(exc))


async def _set_on(source: trio.Event, target: trio.Event) -> None:
    await source.wait()
    target.set()
