"""Views while Redis is unreachable: they go to the view journal in PostgreSQL, totals stay
exact where Redis' own part can be read, and the journal is replayed through Redis' dedup once
Redis is back, so a view seen before the outage is not counted twice."""

from __future__ import annotations

import pytest

from kaleido.app import Running, service_of
from kaleido.breaker import BreakerState
from kaleido.devstack import DevStack
from kaleido.gateways import Backends

from .service_helpers import client
from .views_helpers import create_posts, pg_view_counts, store_of, sync_of
from .waiting import wait_until

pytestmark = pytest.mark.slow


async def journal_rows(backends: Backends) -> int:
    return int(await backends.postgres.fetchval("SELECT count(*) FROM view_journal"))


async def test_a_paused_redis_loses_and_doubles_nothing(
    running: Running,
    stack: DevStack,
) -> None:
    backends = service_of(running).backends
    await create_posts(backends, 1)
    async with client(running) as http:
        assert (await http.post("/v1/views", json={"userId": 1, "postId": 1})).status_code == 202
        stack.redis.pause()  # SIGSTOP: connections hang, the breaker's timeout answers
        try:
            views = [{"userId": u, "postId": 1} for u in (1, 2, 2)]
            r = await http.post("/v1/views", json=views, timeout=30)
            assert r.status_code == 202, r.text
            assert await journal_rows(backends) == 2  # (1, 1) and (2, 1); the repeat deduped
        finally:
            stack.redis.resume()

        async def replayed() -> bool:  # journaling wakes the syncer, which replays the journal
            return await journal_rows(backends) == 0

        await wait_until(replayed, timeout=20)
        # (1, 1) was already counted before the pause, and the timed-out call may still have
        # run once Redis resumed: Redis' flags deduplicated the replay either way
        assert (await http.get("/v1/posts/1/views")).json() == {"postId": 1, "views": 2}

        async def synced() -> bool:  # the same sync run goes on to apply what it replayed
            return await pg_view_counts(backends) == {1: 2}

        await wait_until(synced, timeout=20)


async def test_a_dead_redis_falls_back_and_recovers(
    running: Running,
    stack: DevStack,
) -> None:
    backends = service_of(running).backends
    await create_posts(backends, 1)
    async with client(running) as http:
        assert (await http.post("/v1/views", json={"userId": 1, "postId": 1})).status_code == 202
        stack.redis.kill()
        try:
            views = [{"userId": u, "postId": 1} for u in (2, 3, 3, 4)]
            r = await http.post("/v1/views", json=views)
            assert r.status_code == 202, r.text
            assert r.json() == {"accepted": 4, "counted": 3, "duplicates": 1}
            total = (await http.get("/v1/posts/1/views")).json()
            # the journal's 3 are counted; the 1 buffered in the dead Redis cannot be read
            assert total["views"] == 3 and "degraded" in total
            breaker = backends.redis.breaker
            assert breaker is not None

            async def opened() -> bool:
                await http.post("/v1/views", json={"userId": 99, "postId": 2})
                return breaker.state is BreakerState.OPEN

            await wait_until(opened, timeout=20)
        finally:
            stack.redis.restart()

        async def resumed() -> bool:
            r = await http.get("/v1/posts/1/views")
            return r.status_code == 200 and "degraded" not in r.json()

        await wait_until(resumed, timeout=20)  # through half-open back to closed

        async def closed() -> bool:
            await http.get("/v1/posts/1/views")
            return breaker.state is BreakerState.CLOSED

        await wait_until(closed, timeout=20)
        transitions = service_of(running).metrics.breaker_transitions
        for state in ("open", "half_open", "closed"):  # each change is counted and logged
            assert transitions.labels("redis", state)._value.get() >= 1, state
        # Redis restarted empty: the view it held is the known loss of running without AOF
        assert (await http.get("/v1/posts/1/views")).json()["views"] == 3
        assert (await http.post("/v1/views", json={"userId": 5, "postId": 1})).json()[
            "counted"
        ] == 1
        assert (await http.get("/v1/posts/1/views")).json()["views"] == 4
    await sync_of(backends).run_once()
    assert (await pg_view_counts(backends))[1] == 4
    assert await journal_rows(backends) == 0


async def test_totals_are_exact_between_every_step_of_a_replay(backends: Backends) -> None:
    """The journal replay's steps, one by one, with a read after each."""
    from kaleido.views.journal import JournalReplayer, journal_views
    from kaleido.views.totals import read_total

    await create_posts(backends, 1)
    store = store_of(backends)
    await store.record([(1, 1)])
    assert await journal_views(backends.postgres, [(1, 1), (2, 1), (3, 1)]) == [True] * 3

    async def total() -> int:
        return (await read_total(store, backends.postgres, 1)).views

    assert await total() == 4  # (1, 1) is in Redis and in the journal until the replay
    replayer = JournalReplayer(store, backends.postgres)
    report = await replayer.replay()
    assert (report.views, report.counted) == (3, 2)
    assert await total() == 3
    # an interrupted replay: marked and applied to Redis, rows not deleted yet
    await journal_views(backends.postgres, [(4, 1)])
    await backends.postgres.execute(
        "UPDATE view_journal SET replay_batch = '00000000-0000-0000-0000-0000000000aa'"
    )
    assert await total() == 4
    assert await store.replay("00000000-0000-0000-0000-0000000000aa", [(4, 1)]) == 1
    assert await total() == 4  # in Redis now; the journal row no longer counts
    report = await replayer.replay()  # finishes it without applying it again
    assert (report.views, report.counted) == (1, 0)
    assert await total() == 4
