"""The view syncer: every `interval`, on demand, or early when many posts are pending, takes
`view:batch:lock` and runs the exactly-once sync (kaleido.views.sync).

Failures (PostgreSQL or Redis down) are retried with backoff; nothing is lost meanwhile: the
counters stay in Redis. On shutdown it runs one last sync, bounded by the shutdown deadline.
Each run is listed in `runs` (kaleido.ops.history.SyncLog) for the ops console.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.errors import KaleidoError, TransientError
from kaleido.lock import LockBusy, LockLost
from kaleido.logs import correlation, get_logger
from kaleido.metrics import Metrics
from kaleido.ops.history import SyncLog, SyncRun
from kaleido.views.model import SyncReport

log = get_logger("actors.view_syncer")

RETRY_BASE = 1.0
RETRY_CAP = 30.0
# Sync early when this many posts are pending, so a burst does not wait for the timer.
EARLY_THRESHOLD = 50_000


class SyncRunner(Protocol):
    async def run_once(self) -> SyncReport: ...


class Lock(Protocol):
    def hold(self) -> AbstractAsyncContextManager[None]: ...


@attrs.define(eq=False)
class SyncRequest:
    """An on-demand sync; `done` is set when the run that serves it finished."""

    done: trio.Event = attrs.Factory(trio.Event)
    report: SyncReport | None = None
    error: str | None = None


@attrs.define
class ViewSyncer:
    sync: SyncRunner
    lock: Lock
    metrics: Metrics
    stopping: trio.Event
    interval: float = 300.0
    early_threshold: int = EARLY_THRESHOLD
    runs: SyncLog = attrs.Factory(SyncLog)
    _wake: trio.Event = attrs.Factory(trio.Event)
    _waiting: list[SyncRequest] = attrs.Factory(list)

    def wake(self) -> None:
        """Run a sync soon (e.g. to replay views journaled while Redis was down)."""
        self._wake.set()

    def notify_pending(self, pending: int) -> None:
        """The ingester's hook: wake the syncer early when the pending set grows large."""
        if pending >= self.early_threshold:
            self._wake.set()

    async def request(self) -> SyncRequest:
        """Ask for a sync now and wait until a run has served it."""
        req = SyncRequest()
        self._waiting.append(req)
        self._wake.set()
        await req.done.wait()
        return req

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        next_due = trio.current_time() + self.interval
        while not self.stopping.is_set():
            with trio.move_on_at(next_due):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_set_on, self.stopping, self._wake)
                    await self._wake.wait()
                    nursery.cancel_scope.cancel()
            self._wake = trio.Event()
            if self.stopping.is_set():
                break
            ok = await self.run_once()
            if ok:
                backoff.reset()
                next_due = trio.current_time() + self.interval
            else:
                next_due = trio.current_time() + backoff.next()
        await self.run_once()  # the last sync on the way out

    async def run_once(self) -> bool:
        """One sync under the lock; True unless it failed (a busy lock is not a failure)."""
        waiting, self._waiting = self._waiting, []
        started = time.monotonic()
        report: SyncReport | None = None
        error: str | None = None
        busy = False  # another process holds the lock: not a failure
        with correlation(None):
            try:
                async with self.lock.hold():
                    report = await self.sync.run_once()
            except LockBusy:
                self.metrics.sync_runs.labels("busy").inc()
                error = "another syncer holds the lock"
                busy = True
            except (TransientError, LockLost) as exc:
                error = str(exc)
                self.metrics.sync_runs.labels("failure").inc()
                log.warning("sync.failed", error=error)
            except KaleidoError as exc:
                error = str(exc)
                self.metrics.sync_runs.labels("failure").inc()
                log.error("sync.failed", error=error)
            if report is not None:
                elapsed = time.monotonic() - started
                self.metrics.sync_runs.labels("success").inc()
                self.metrics.sync_duration.observe(elapsed)
                self.metrics.synced_views.inc(report.views)
                self.metrics.views.labels("dropped_unknown_post").inc(report.backlog_dropped_views)
                if report.backlog_posts >= 0:
                    self.metrics.unknown_post_backlog.set(report.backlog_posts)
                self.metrics.last_sync_success.set(time.time())
                log.info("sync.done", seconds=round(elapsed, 4), **attrs.asdict(report))
        self.runs.record(
            SyncRun(
                at=time.time(),
                result="success" if report is not None else "busy" if busy else "failure",
                seconds=time.monotonic() - started,
                views=report.views if report is not None else 0,
                posts=report.posts if report is not None else 0,
                error=error,
            )
        )
        for req in waiting:
            req.report, req.error = report, error
            req.done.set()
        return report is not None or busy


async def _set_on(source: trio.Event, target: trio.Event) -> None:
    await source.wait()
    target.set()
