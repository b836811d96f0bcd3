"""`ViewTracker`: the facade that trio services (and the HTTP API) use to record views.

`record()` never waits on I/O: it validates the ids and puts the view on a bounded memory
channel that the view ingester drains into Redis in batches. When the channel is full the view
is rejected and counted, never dropped silently. `record_and_wait()` waits for room and returns
only once its views are durable in Redis, which is what `POST /v1/views` answers 202 on.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import trio

from kaleido.errors import TransientError
from kaleido.views.model import RecordResult, check_id


@attrs.define(eq=False)
class Waiter:
    """A group of views whose sender waits until they are applied."""

    views: list[tuple[int, int]]
    done: trio.Event = attrs.Factory(trio.Event)
    result: RecordResult | None = None
    error: BaseException | None = None

    def finish(self, result: RecordResult | None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


Item = tuple[int, int] | Waiter


@attrs.define
class TrackerStats:
    queued: int = 0
    rejected: int = 0


class ViewRejected(TransientError):
    """The ingest queue is full or closed; the view was not taken."""


class ViewTracker:
    """Records views without blocking; reads exact totals."""

    def __init__(self, send: trio.MemorySendChannel[Item]) -> None:
        self._send = send
        self.stats = TrackerStats()

    def record(self, user_id: int, post_id: int) -> bool:
        """Queue one view; False (and counted) if the queue is full or closed.

        Raises ValueError naming the bad id.
        """
        view = (check_id(user_id, "userId"), check_id(post_id, "postId"))
        try:
            self._send.send_nowait(view)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.rejected += 1
            return False
        self.stats.queued += 1
        return True

    async def record_and_wait(self, views: Iterable[tuple[object, object]]) -> RecordResult:
        """Queue views (waiting for room) and return once they are durable.

        Raises ValueError naming the first bad id, ViewRejected if the ingester is shut down,
        or the backend error that kept the views from being stored.
        """
        checked = [(check_id(u, "userId"), check_id(p, "postId")) for u, p in views]
        if not checked:
            return RecordResult(0, 0)
        waiter = Waiter(checked)
        try:
            await self._send.send(waiter)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.rejected += len(checked)
            raise ViewRejected("view intake is closed (the service is stopping)") from None
        self.stats.queued += len(checked)
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def close(self) -> None:
        """Stop intake: later records are rejected; the ingester drains what is queued."""
        self._send.close()
