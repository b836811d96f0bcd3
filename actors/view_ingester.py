"""The view ingester: drains the tracker's channel into Redis, one round trip per batch.

Batching is adaptive: while batches are in Redis, the next accumulates in the channel, so a
quiet system applies views one by one with no added latency and a busy one in large batches.
Two batches are in flight at once, so that preparing one (Python) overlaps Redis applying the
other; their order does not matter, since each view's dedup is decided atomically in Redis.
While Redis is unreachable (or out of memory) a batch goes to the view journal in PostgreSQL
instead (kaleido.views.journal), which the syncer replays through Redis' dedup once Redis is
back. If PostgreSQL fails too, the batch is kept and retried (never dropped); the channel
fills meanwhile, which is the backpressure that `record()` and `record_and_wait()` see.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.concurrency import raise_unwrapped
from kaleido.errors import RedisOutOfMemory, RedisPermissionDenied, TransientError
from kaleido.gateways import PostgresGateway
from kaleido.logs import get_logger
from kaleido.metrics import Metrics
from kaleido.views.journal import journal_views
from kaleido.views.model import RecordResult
from kaleido.views.store import ViewStore
from kaleido.views.tracker import Item, ViewRejected, Waiter

log = get_logger("actors.view_ingester")

# Views per Redis round trip: large enough to amortise the trio-asyncio hop, small enough that
# one script keeps Redis busy for only a few milliseconds.
MAX_BATCH = 2000
# Batches in flight at once: one being prepared or answered while Redis applies the other.
IN_FLIGHT = 2
RETRY_BASE = 0.05
RETRY_CAP = 2.0


@attrs.define
class ViewIngester:
    store: ViewStore
    receive: trio.MemoryReceiveChannel[Item]
    metrics: Metrics
    # Called with the pending-set size after each batch (the syncer's early trigger).
    on_pending: Callable[[int], None] | None = None
    # The PostgreSQL path while Redis is down; None makes Redis failures retry in place.
    journal: PostgresGateway | None = None
    # Called after views went to the journal, so that the syncer replays them soon.
    on_journaled: Callable[[], None] | None = None
    max_batch: int = MAX_BATCH
    in_flight: int = IN_FLIGHT
    # Views whose batch is done (applied, journaled or failed): with the tracker's count of
    # views queued, it tells when everything queued has been dealt with.
    settled: int = attrs.field(default=0, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the channel is closed and drained.

        Ready at once: with Redis down at start-up the fallback (or the queue) takes the views.
        If this actor dies mid-batch, the batches' waiters get the error instead of hanging;
        the error is raised as itself, not in a group.
        """
        task_status.started()
        slots = trio.Semaphore(self.in_flight)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await slots.acquire()  # meanwhile the next batch accumulates
                    batch = await self._next_batch()
                    if batch is None:
                        return
                    nursery.start_soon(self._apply_batch, batch, slots)
        except BaseExceptionGroup as group:
            raise_unwrapped(group)

    async def _next_batch(self) -> list[Item] | None:
        try:
            first = await self.receive.receive()
        except trio.EndOfChannel:
            return None
        batch = [first]
        views = _count(first)
        while views < self.max_batch:
            try:
                item = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(item)
            views += _count(item)
        return batch

    async def _apply_batch(self, batch: list[Item], slots: trio.Semaphore) -> None:
        try:
            await self._apply_until_done(batch)
        except BaseException as exc:
            for item in batch:
                if isinstance(item, Waiter) and not item.done.is_set():
                    item.finish(None, ViewRejected(f"view ingester stopped: {exc!r}"))
            raise
        finally:
            self.settled += sum(_count(item) for item in batch)
            slots.release()

    async def _apply_until_done(self, batch: list[Item]) -> None:
        """Apply to Redis; on failure use the fallback, or retry in place without one."""
        flat = _flatten(batch)
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        while True:
            try:
                flags, pending = await self.store.record(flat)
            # Refusals (maxmemory, an ACL changed under us) journal too: nothing is lost.
            except (TransientError, RedisOutOfMemory, RedisPermissionDenied) as exc:
                if self.journal is not None:
                    log.warning("ingest.using_journal", views=len(flat), error=str(exc))
                    flags = await self._write_journal(self.journal, flat)
                    self.metrics.views.labels("journaled").inc(len(flat))
                    if self.on_journaled is not None:
                        self.on_journaled()
                    break
                delay = backoff.next()
                log.warning("ingest.retry", views=len(flat), error=str(exc), delay=delay)
                await trio.sleep(delay)
            else:
                if self.on_pending is not None:
                    self.on_pending(pending)
                break
        self._finish(batch, flat, flags)

    async def _write_journal(
        self, journal: PostgresGateway, flat: list[tuple[int, int]]
    ) -> list[bool]:
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        while True:
            try:
                return await journal_views(journal, flat)
            except TransientError as exc:
                delay = backoff.next()
                log.warning("ingest.postgres_retry", views=len(flat), error=str(exc), delay=delay)
                await trio.sleep(delay)

    def _finish(self, batch: list[Item], flat: list[tuple[int, int]], flags: list[bool]) -> None:
        counted = sum(flags)
        self.metrics.views.labels("counted").inc(counted)
        self.metrics.views.labels("duplicate").inc(len(flat) - counted)
        self.metrics.ingest_batches.inc()
        self.metrics.ingest_batch_size.observe(len(flat))
        counted_flags = flags
        position = 0
        for item in batch:
            if isinstance(item, Waiter):
                flags = counted_flags[position : position + len(item.views)]
                item.finish(RecordResult(sum(flags), len(flags) - sum(flags)))
            position += _count(item)


def _flatten(batch: list[Item]) -> list[tuple[int, int]]:
    flat: list[tuple[int, int]] = []
    for item in batch:
        if isinstance(item, Waiter):
            flat.extend(item.views)
        else:
            flat.append(item)
    return flat


def _count(item: Item) -> int:
    return len(item.views) if isinstance(item, Waiter) else 1
