"""A Redis Cluster master SIGKILLed while views are recorded and a consumer runs: its replica
takes over, and recording, counting and consuming go on without a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio

from kaleido.devstack import DevStack
from kaleido.errors import TransientError
from kaleido.gateways import Backends
from kaleido.messages import INSIGHTS_STREAM
from kaleido.views.store import ViewStore
from kaleido.views.totals import read_total

from .streams_helpers import insight, running, xadd
from .views_helpers import store_of
from .waiting import wait_until

pytestmark = [pytest.mark.redis_kinds("cluster"), pytest.mark.slow]

T = TypeVar("T")


async def until_done(call: Callable[[], Awaitable[T]]) -> T:
    """Retry while the cluster fails over (a transient error, never another)."""
    with trio.fail_after(30):
        while True:
            try:
                return await call()
            except TransientError:
                await trio.sleep(0.1)


async def record_until_done(store: ViewStore, views: list[tuple[int, int]]) -> list[bool]:
    return (await until_done(lambda: store.record(views)))[0]


async def test_a_master_fails_over_under_views_and_a_consumer(
    backends: Backends, cluster_stack: DevStack
) -> None:
    cluster = cluster_stack.cluster
    store = store_of(backends)
    posts = range(1, 65)  # every partition, so every master
    assert all(await record_until_done(store, [(u, p) for p in posts for u in range(1, 4)]))
    victim = None
    try:
        async with running(backends, INSIGHTS_STREAM) as consumers:
            victim = await trio.to_thread.run_sync(cluster.kill_master, 0)
            await trio.to_thread.run_sync(cluster.wait_for_failover, victim)

            # What the replicas had when they took over (asynchronous replication may have
            # missed the last writes): from here on, every view counts exactly once.
            async def total(post: int) -> int:
                return (await until_done(lambda: read_total(store, backends.postgres, post))).views

            base = {p: await total(p) for p in posts}
            after = [(u, p) for p in posts for u in range(10, 12)]
            await record_until_done(store, after)  # a retried call reports its views as repeats
            assert not any(await record_until_done(store, after))
            for p in posts:
                assert await total(p) == base[p] + 2
            with trio.fail_after(30):
                while True:
                    try:
                        await xadd(backends, INSIGHTS_STREAM, {
                            "mediaId": "77", "postId": "7", "service": "tagging",
                            "tags": '["after-failover"]',
                        })  # fmt: skip
                        break
                    except TransientError:
                        await trio.sleep(0.1)

            async def applied() -> bool:
                row = await insight(backends, 77)
                return row is not None and row["tags"] == ["after-failover"]

            await wait_until(applied, timeout=30)
            assert consumers[INSIGHTS_STREAM].stats.applied >= 1  # it never crashed out
    finally:
        if victim is not None:
            cluster.restart_node(victim)  # from this thread: the node outlives no thread of ours
