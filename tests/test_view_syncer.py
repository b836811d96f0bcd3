"""The syncer's schedule on trio's autojump clock, with a fake sync and a fake lock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from actors.view_syncer import ViewSyncer
from kaleido.errors import PostgresUnavailable
from kaleido.lock import LockBusy
from kaleido.metrics import Metrics
from kaleido.views.model import SyncReport


@attrs.define
class FakeSync:
    runs: list[float] = attrs.Factory(list)
    failures_left: int = 0

    async def run_once(self) -> SyncReport:
        self.runs.append(trio.current_time())
        if self.failures_left:
            self.failures_left -= 1
            raise PostgresUnavailable("postgres: down")
        return SyncReport(batches=1, posts=1, views=1)


@attrs.define
class FakeLock:
    busy: bool = False

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self.busy:
            raise LockBusy("held")
        yield


def syncer(sync: FakeSync, stopping: trio.Event, lock: FakeLock | None = None) -> ViewSyncer:
    return ViewSyncer(
        sync, lock or FakeLock(), Metrics(), stopping, interval=300, early_threshold=10
    )


async def test_runs_every_interval(autojump_clock: trio.abc.Clock) -> None:
    sync, stopping = FakeSync(), trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(syncer(sync, stopping).run)
        await trio.sleep(1000)
        stopping.set()
    # at 300, 600, 900, and the last sync on the way out at 1000
    assert [round(t) for t in sync.runs] == [300, 600, 900, 1000]


async def test_on_demand_and_early_trigger(autojump_clock: trio.abc.Clock) -> None:
    sync, stopping = FakeSync(), trio.Event()
    actor = syncer(sync, stopping)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await trio.sleep(10)
        request = await actor.request()
        assert request.report is not None and request.report.views == 1
        await trio.sleep(10)
        actor.notify_pending(5)  # below the threshold: nothing
        await trio.sleep(1)
        actor.notify_pending(10)
        await trio.sleep(1)
        stopping.set()
    assert [round(t) for t in sync.runs] == [10, 21, 22]


async def test_failures_back_off_then_recover(autojump_clock: trio.abc.Clock) -> None:
    sync, stopping = FakeSync(failures_left=3), trio.Event()
    metrics = Metrics()
    actor = ViewSyncer(sync, FakeLock(), metrics, stopping, interval=300)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await trio.sleep(310)
        stopping.set()
    # fails at 300, 301 and 303 (backoff 1, 2, 4 s), succeeds at 307; the last run at 310
    assert [round(t) for t in sync.runs] == [300, 301, 303, 307, 310]
    assert metrics.sync_runs.labels("failure")._value.get() == 3


async def test_busy_lock_is_not_a_failure(autojump_clock: trio.abc.Clock) -> None:
    sync, stopping = FakeSync(), trio.Event()
    metrics = Metrics()
    actor = ViewSyncer(sync, FakeLock(busy=True), metrics, stopping, interval=300)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await trio.sleep(650)
        stopping.set()
    assert sync.runs == []
    assert metrics.sync_runs.labels("busy")._value.get() == 3
    assert metrics.sync_runs.labels("failure")._value.get() == 0
