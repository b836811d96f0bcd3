"""A fault scenario: the service in its own process on private servers, its two workloads, and
what a scenario measures (the tally against the model, the report row). Shared by the
single-server and the cluster fault tests."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import httpx
import redis as sync_redis
import trio

from kaleido.devstack import DevStack
from kaleido.settings import Settings

from .conftest import REPORT
from .harness import (
    EntryWorkload,
    ServiceProcess,
    Tally,
    ViewWorkload,
    stuck_entries,
    sync_now,
    synced_counts,
    tally,
)

ROWS_WITH_POSTS = 30  # posts 31-40 have no row: their views go to the backlog


@attrs.define
class Scenario:
    stack: DevStack
    settings: Settings
    service: ServiceProcess
    views: ViewWorkload
    entries: EntryWorkload
    recovery: float = 0.0  # seconds, set by the scenario

    def redis(self) -> sync_redis.Redis:
        return sync_redis.Redis.from_url(self.stack.redis_url, socket_timeout=5)


@attrs.frozen
class Outcome:
    views: Tally
    entries_lost: int
    entries_stuck: int


async def load_for(s: Scenario, seconds: float) -> None:
    """Both workloads for `seconds`, then every request of unknown outcome retried."""

    async def just_load() -> float:
        await trio.sleep(seconds)
        return 0.0

    await load_during(s, just_load, after=0)


async def load_during(
    s: Scenario, fault: Callable[[], Awaitable[float]], *, before: float = 0.0, after: float = 1.5
) -> float:
    """Run both workloads; `before` seconds in, await `fault()` (its result is returned); keep
    the load `after` seconds more, then settle unknown requests."""
    stop = trio.Event()
    result = 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.views.run, stop)
        nursery.start_soon(s.entries.run, stop)
        await trio.sleep(before)  # load time under the workload, not a wait for a condition
        result = await fault()
        await trio.sleep(after)
        stop.set()
    await s.views.settle()
    return result


async def finish(s: Scenario, expected: Counter[int] | None = None) -> Outcome:
    """Final sync, then the tally against `expected` (default: every acknowledged view)."""
    await sync_now(s.service.ops_url)
    actual = await synced_counts(s.settings)
    entries_lost = await s.entries.wait_all_applied(s.settings)
    return Outcome(
        tally(s.views.expected_counts() if expected is None else expected, actual),
        entries_lost,
        await stuck_entries(s.settings),
    )


async def until_serving(s: Scenario, since: float) -> float:
    """Seconds from `since` until a view is accepted again and /readyz is 200."""
    async with httpx.AsyncClient(base_url=s.service.base_url, timeout=2) as http:
        with trio.fail_after(60):
            while True:
                try:
                    ready = await http.get("/readyz")
                    view = await http.post("/v1/views", json={"userId": 999_999, "postId": 1})
                    if ready.status_code == 200 and view.status_code == 202:
                        s.views.acknowledged.add((999_999, 1))
                        s.views.by_phase.setdefault(s.views.phase, set()).add((999_999, 1))
                        return time.monotonic() - since
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


def report(fault: str, outcome: Outcome, recovery: float, note: str = "") -> None:
    t = outcome.views
    with REPORT.open("a") as out:
        out.write(
            f"| {fault} | {t.lost} | {t.doubled} | {outcome.entries_lost} | "
            f"{outcome.entries_stuck} | {recovery:.2f} s | {note} |\n"
        )


def assert_clean(outcome: Outcome) -> None:
    assert outcome.views.clean, outcome
    assert outcome.entries_lost == 0 and outcome.entries_stuck == 0, outcome
