"""The view ingester: drains the tracker's channel into Redis, one round trip per batch.

Batching is adaptive: while one batch is in Redis, the next accumulates in the channel, so a
quiet system applies views one by one with no added latency and a busy one in large batches.
A batch that Redis refuses for a transient reason is kept and retried (never dropped); the
channel fills meanwhile, which is the backpressure `record()` and `record_and_wait()` see.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from kaleido.errors import BackendError, TransientError
from kaleido.logs import get_logger
from kaleido.metrics import Metrics
from kaleido.views.model import RecordResult
from kaleido.views.store import ViewStore
from kaleido.views.tracker import Item, Waiter

log = get_logger("actors.view_ingester")

# Views per Redis round trip: large enough to amortise the trio-asyncio hop, small enough that
# one script keeps Redis busy for only a few milliseconds.
MAX_BATCH = 2000
RETRY_BASE = 0.05
RETRY_CAP = 2.0


@attrs.define
class ViewIngester:
    store: ViewStore
    receive: trio.MemoryReceiveChannel[Item]
    metrics: Metrics
    # Called with the pending-set size after each batch (the syncer's early trigger).
    on_pending: Callable[[int], None] | None = None
    max_batch: int = MAX_BATCH

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the channel is closed and drained; Redis errors are retried in place."""
        await self.store.redis.ping()
        task_status.started()
        while True:
            try:
                first = await self.receive.receive()
            except trio.EndOfChannel:
                return
            batch = [first]
            views = _count(first)
            while views < self.max_batch:
                try:
                    item = self.receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(item)
                views += _count(item)
            await self._apply_until_done(batch)

    async def _apply_until_done(self, batch: list[Item]) -> None:
        delay = RETRY_BASE
        while True:
            try:
                await self.apply(batch)
                return
            except TransientError as exc:
                log.warning("ingest.retry", views=len(batch), error=str(exc), delay=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)
            except BackendError as exc:
                # Not retryable (e.g. OOM until issue-5 fallback): fail the waiters loudly.
                log.error("ingest.failed", views=len(batch), error=str(exc))
                for item in batch:
                    if isinstance(item, Waiter):
                        item.finish(None, exc)
                self.metrics.views.labels("rejected").inc(sum(_count(i) for i in batch))
                return

    async def apply(self, batch: list[Item]) -> None:
        flat: list[tuple[int, int]] = []
        for item in batch:
            if isinstance(item, Waiter):
                flat.extend(item.views)
            else:
                flat.append(item)
        counted_flags, pending = await self.store.record(flat)
        counted = sum(counted_flags)
        self.metrics.views.labels("counted").inc(counted)
        self.metrics.views.labels("duplicate").inc(len(flat) - counted)
        self.metrics.ingest_batches.inc()
        self.metrics.ingest_batch_size.observe(len(flat))
        position = 0
        for item in batch:
            if isinstance(item, Waiter):
                flags = counted_flags[position : position + len(item.views)]
                item.finish(RecordResult(sum(flags), len(flags) - sum(flags)))
            position += _count(item)
        if self.on_pending is not None:
            self.on_pending(pending)


def _count(item: Item) -> int:
    return len(item.views) if isinstance(item, Waiter) else 1
