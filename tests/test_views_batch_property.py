"""A batch is an optimisation, never a meaning, for views too: the same requests of views
through the ingester one view per batch, and in random batches (several requests merged, split
at random sizes, two batches in flight), end in the same state: the same totals in PostgreSQL
after a sync, the same exact totals read, the same counted / duplicate / journaled counts. The
journal path included: while Redis refuses (unreachable, or its breaker open), every view of
that stretch goes to the PostgreSQL journal and is replayed by the sync. Real Redis and
PostgreSQL; generated repeats, unknown posts and outages.

`KALEIDO_PROPERTY_EXAMPLES` sets the examples (a short run by default; the long form is 500),
as for the stream handlers' property (tests/test_streams_batch_property.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actors.view_ingester import ViewIngester
from kaleido.errors import CircuitOpen, RedisUnavailable
from kaleido.gateways import Backends, open_backends
from kaleido.metrics import Metrics
from kaleido.settings import Settings
from kaleido.views.store import ViewStore
from kaleido.views.totals import read_total
from kaleido.views.tracker import Item, ViewTracker

from .service_helpers import reset
from .views_helpers import create_posts, pg_view_counts, store_of, sync_of

pytestmark = pytest.mark.redis_kinds("single")

EXAMPLES = int(os.environ.get("KALEIDO_PROPERTY_EXAMPLES", "12"))
POSTS = (1, 2, 3)  # 3 has no row: its views wait in the backlog
OUTCOMES = ("counted", "duplicate", "journaled")

View = tuple[int, int]
Request = list[View]
# A stretch of requests sent while Redis answers (False) or refuses (True).
Stretch = tuple[bool, list[Request]]


@attrs.define
class _Outage:
    """The ingester's store, refusing while `down` (as the gateway does when Redis is
    unreachable or its breaker is open)."""

    store: ViewStore
    down: bool = False
    refusal: type[Exception] = RedisUnavailable

    async def record(self, views: Sequence[View]) -> tuple[list[bool], int]:
        if self.down:
            raise self.refusal("redis: refused by the test")
        return await self.store.record(views)


async def _run(
    backends: Backends, stretches: list[Stretch], max_batch: int | None, refusal: type[Exception]
) -> tuple[Any, ...]:
    """Send the stretches through a real ingester; `max_batch` None sends one view per batch
    (one view per request, each awaited), otherwise every request of a stretch at once."""
    await reset(backends)
    await create_posts(backends, 1, 2)
    metrics = Metrics()
    outage = _Outage(store_of(backends), refusal=refusal)
    send, receive = trio.open_memory_channel[Item](10_000)
    ingester = ViewIngester(
        outage,  # type: ignore[arg-type]  # only record() is called
        receive,
        metrics,
        journal=backends.postgres,
        max_batch=max_batch or 1,
    )
    tracker = ViewTracker(send)
    answered = [0, 0]  # counted, duplicates: as the callers were told
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ingester.run)
        for down, requests in stretches:
            outage.down = down

            async def send_one(views: Request) -> None:
                result = await tracker.record_and_wait(views)
                answered[0] += result.counted
                answered[1] += result.duplicates

            if max_batch is None:
                for request in requests:
                    for view in request:
                        await send_one([view])
            else:
                async with trio.open_nursery() as senders:
                    for request in requests:
                        senders.start_soon(send_one, request)
        tracker.close()
    report = await sync_of(backends).run_once()
    assert await backends.postgres.fetchval("SELECT count(*) FROM view_journal") == 0
    store = store_of(backends)
    totals = {p: (await read_total(store, backends.postgres, p)).views for p in POSTS}
    outcomes = {
        o: metrics.registry.get_sample_value("kaleido_views_total", {"outcome": o})
        for o in OUTCOMES
    }
    return await pg_view_counts(backends), totals, outcomes, tuple(answered), report.views


async def _check(
    settings: Settings, stretches: list[Stretch], max_batch: int, refusal: type[Exception]
) -> None:
    async with open_backends(settings) as backends:  # a trio run of its own: its connections
        one_by_one = await _run(backends, stretches, None, refusal)
        batched = await _run(backends, stretches, max_batch, refusal)
    assert batched == one_by_one


views = st.tuples(st.integers(1, 4), st.sampled_from(POSTS))
requests = st.lists(st.lists(views, min_size=1, max_size=6), min_size=1, max_size=5)
stretches = st.lists(st.tuples(st.booleans(), requests), min_size=1, max_size=4)
refusals = st.sampled_from([RedisUnavailable, CircuitOpen])

# Repeats in one request, across requests, across an outage (journaled, then seen again with
# Redis back; seen, then journaled), and an unknown post on both paths.
REPEATS: list[Stretch] = [
    (False, [[(1, 1), (1, 1), (2, 1)], [(2, 1), (3, 3)]]),
    (True, [[(1, 1), (4, 2), (4, 2)], [(3, 3), (4, 3)]]),
    (False, [[(4, 2), (4, 3), (1, 2)]]),
    (True, [[(1, 2), (2, 2)]]),
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stretches, st.integers(1, 8), refusals)
@example(REPEATS, 2, RedisUnavailable)
@example(REPEATS, 5, CircuitOpen)
async def test_views_in_batches_equal_views_one_by_one(
    settings: Settings, stretches: list[Stretch], max_batch: int, refusal: type[Exception]
) -> None:
    await _check(settings, stretches, max_batch, refusal)
