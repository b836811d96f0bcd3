"""The fault suite: Kaleido as a real process (`run.py`) with private redis-server and
PostgreSQL, a known workload, one injected fault per scenario, and a check against the model.

For each scenario: views lost, views double-counted, stream entries whose effect is missing,
entries left pending or dead-lettered, and the recovery time; each writes one row of the
report (.state/reports/tests/faults/REPORT.md; with KALEIDO_REFRESH_REPORTS=1,
tests/faults/REPORT.md; docs/resilience.md shows it). Every figure is zero except where Redis
without persistence dies or is flushed: the views only it held are the one known window, and the
`appendonly yes` scenario shows that persistence closes it. At maxmemory, a repeat of a pair
whose dedup bucket was evicted counts again, bounded by the evicted buckets' fields.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import cast

import attrs
import pytest
import redis as sync_redis
import trio

from kaleido.devstack import DevStack, dev_stack
from kaleido.gateways import open_backends
from kaleido.keys import KeyLayout
from kaleido.settings import Settings
from kaleido.views.dedup import BUCKET_CAP

from ..conftest import REPO
from ..waiting import wait_until
from .harness import (
    EntryWorkload,
    ServiceProcess,
    Tally,
    ViewWorkload,
    synced_counts,
    tally,
)
from .scenarios import (
    ROWS_WITH_POSTS,
    Outcome,
    Scenario,
    assert_clean,
    finish,
    load_during,
    load_for,
    report,
    until_serving,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def fault_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DevStack]:
    overrides: dict[str, str] = getattr(request, "param", {})
    os.chmod(tmp_path, 0o755)
    with dev_stack(tmp_path, REPO / "redis.conf", fast=True, redis_overrides=overrides) as stack:
        yield stack


@pytest.fixture
async def scenario(fault_stack: DevStack, tmp_path: Path) -> AsyncIterator[Scenario]:
    settings = Settings(redis_url=fault_stack.redis_url, database_url=fault_stack.database_url)
    service = ServiceProcess(
        fault_stack.redis_url, fault_stack.database_url, log_path=tmp_path / "kaleido.log"
    )
    await service.start()
    await trio.to_thread.run_sync(
        fault_stack.postgres.psql,
        f"INSERT INTO posts (post_id, user_id) SELECT g, 1 FROM generate_series(1, "
        f"{ROWS_WITH_POSTS}) g",
    )
    try:
        yield Scenario(
            fault_stack,
            settings,
            service,
            ViewWorkload(service.base_url),
            EntryWorkload(fault_stack.redis_url),
        )
    finally:
        service.close()


# ------------------------------------------------------------------------------- the service


async def test_service_sigkill_mid_sync_and_mid_batch(scenario: Scenario) -> None:
    s = scenario
    rng = random.Random(5)
    recoveries: list[float] = []

    async def kill_repeatedly() -> float:
        for _ in range(4):
            await trio.sleep(rng.uniform(0.2, 1.2))  # a random moment under load
            s.service.kill()
            started = time.monotonic()
            await s.service.start()
            recoveries.append(await until_serving(s, started))
        return max(recoveries)

    recovery = await load_during(s, kill_repeatedly)
    outcome = await finish(s)
    report("service SIGKILL ×4 at random moments (syncs every 0.5 s)", outcome, recovery)
    assert_clean(outcome)


async def test_sigterm_under_load(scenario: Scenario) -> None:
    s = scenario
    deadline = 8.0  # KALEIDO_SHUTDOWN_DEADLINE of the harness
    exits: list[tuple[int, float]] = []

    async def terminate_and_restart() -> float:
        exits.append(await s.service.terminate(timeout=deadline + 5))
        started = time.monotonic()
        await s.service.start()
        return await until_serving(s, started)

    recovery = await load_during(s, terminate_and_restart, before=1.5)
    outcome = await finish(s)
    [(status, took)] = exits
    note = f"exit {status} in {took:.2f} s"
    report("service SIGTERM under load, then restart", outcome, recovery, note)
    assert status == 0 and took < deadline
    assert_clean(outcome)


# ------------------------------------------------------------------------------- PostgreSQL


async def outage(s: Scenario, down: Callable[[], None], up: Callable[[], None]) -> Outcome:
    """Under load: `down()`, 5 s of load, `up()`; returns the outcome, records the recovery.

    The servers' death signal follows the thread that started them, so they are stopped and
    started from this (main) thread; each call blocks the loop for a moment."""

    async def fault() -> float:
        down()
        await trio.sleep(5)  # the outage lasts 5 s of load
        started = time.monotonic()
        up()
        return await until_serving(s, started)

    s.recovery = await load_during(s, fault, before=1.0)
    return await finish(s)


async def test_postgres_stop_and_start(scenario: Scenario) -> None:
    s = scenario
    outcome = await outage(s, s.stack.postgres.stop, s.stack.postgres.start)
    report("PostgreSQL stopped 5 s under load", outcome, s.recovery, "views stay in Redis")
    assert_clean(outcome)


# ------------------------------------------------------------------------------- Redis


async def test_redis_sigstop_5s(scenario: Scenario) -> None:
    s = scenario
    outcome = await outage(s, s.stack.redis.pause, s.stack.redis.resume)
    report("redis-server SIGSTOP 5 s, SIGCONT", outcome, s.recovery, "views journaled meanwhile")
    assert_clean(outcome)


def buffered_in_redis(s: Scenario) -> int:
    """Views only Redis holds: unsynced counters and in-flight batches."""
    client = s.redis()
    try:
        keys = KeyLayout(s.settings.key_prefix, s.settings.view_partitions)
        hashes = [keys.counts(q) for q in range(keys.partitions)]
        for q in range(keys.partitions):
            batches = cast("set[bytes]", client.smembers(keys.batches(q)))
            hashes += [keys.batch(q, b.decode()) for b in batches]
        views = 0
        for key in hashes:
            views += sum(int(v) for v in cast("list[bytes]", client.hvals(key)))
    finally:
        client.close()
    return views


async def buffer_a_known_load(s: Scenario) -> int:
    """Restart the service without timed syncs, load it, and return the views Redis alone holds
    (all of phase 0: nothing was synced). Inbound entries are all applied by then."""
    s.service.kill()
    s.service.sync_interval = 300
    await s.service.start()
    await load_for(s, 1.5)
    buffered = buffered_in_redis(s)
    assert buffered == len(s.views.by_phase[0])
    assert await s.entries.wait_all_applied(s.settings) == 0
    s.views.phase = 1
    return buffered


def lossy_model(s: Scenario) -> tuple[Counter[int], int]:
    """What must survive when Redis lost phase 0: every pair acknowledged since (a repeat of a
    lost pair counts again, once: its dedup flag was lost too). Returns it and the views lost."""
    survivors = s.views.acknowledged_since(1)
    lost = len(s.views.by_phase[0] - survivors)
    return Counter(post for _, post in survivors), lost


async def finish_lossy(s: Scenario, fault: str, buffered: int) -> None:
    """Finish a scenario in which Redis lost phase 0: everything since is exact, and what is
    missing overall is exactly the views only Redis held that nobody repeated."""
    expected, lost = lossy_model(s)
    outcome = await finish(s, expected)
    full = tally(s.views.expected_counts(), await synced_counts(s.settings))
    note = f"the known window: {buffered} views only Redis held; {lost} not viewed again"
    report(fault, attrs.evolve(outcome, views=full), s.recovery, note)
    assert_clean(outcome)
    assert full == Tally(lost=lost, doubled=0)


@pytest.mark.parametrize(
    ("fault_stack", "persistence"),
    [({}, "none"), ({"appendonly": "yes", "appendfsync": "always"}, "aof")],
    indirect=["fault_stack"],
)
async def test_redis_sigkill_and_restart(scenario: Scenario, persistence: str) -> None:
    s = scenario
    buffered = await buffer_a_known_load(s)
    s.stack.redis.kill()  # with no request in flight, so phase 0 is exactly what it held
    dead_for = 1.5

    async def restart_redis() -> float:
        await trio.sleep(dead_for)  # load while Redis is dead: views go to the journal
        started = time.monotonic()
        s.stack.redis.restart()
        return await until_serving(s, started)

    s.recovery = await load_during(s, restart_redis)
    if persistence == "aof":
        outcome = await finish(s)
        report("redis-server SIGKILL, down 1.5 s, restart (appendonly yes)", outcome, s.recovery)
        assert_clean(outcome)
        return
    await finish_lossy(s, "redis-server SIGKILL, down 1.5 s, restart (no persistence)", buffered)


async def test_flushall(scenario: Scenario) -> None:
    s = scenario
    buffered = await buffer_a_known_load(s)
    first_new = len(s.entries.added)  # the index of the first entry written after the flush
    async with open_backends(s.settings) as backends:  # to watch PostgreSQL, opened beforehand
        client = s.redis()
        try:
            started = time.monotonic()
            client.flushall()  # with no request in flight, so phase 0 is exactly what it held
        finally:
            client.close()

        async def recovered() -> float:
            serving = await until_serving(s, started)

            # Consumers recreate their group: the first entry written after the flush is
            # applied.
            async def first_new_applied() -> bool:
                added = s.entries.added
                return len(added) > first_new and added[first_new] in await s.entries.applied(
                    backends.postgres
                )

            await wait_until(first_new_applied, timeout=5, interval=0.05)
            return max(serving, time.monotonic() - started)

        s.recovery = await load_during(s, recovered)
    await finish_lossy(s, "FLUSHALL", buffered)


async def test_redis_at_maxmemory(scenario: Scenario) -> None:
    s = scenario
    client = s.redis()
    await load_for(s, 1.0)
    s.views.phase = 1
    oom_before = oom_errors(client)

    async def fill_redis() -> float:
        # A ballast without TTL fills Redis past maxmemory: volatile-lru evicts dedup buckets
        # (they have a TTL), then refuses writes; counts, batches and streams stay.
        client.set("fault:ballast", b"x" * (6 * 1024 * 1024))
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 1024 * 1024)  # Redis evicts at once
        await trio.sleep(2.0)  # load against a full Redis
        started = time.monotonic()
        client.delete("fault:ballast")
        return await until_serving(s, started)

    try:
        recovery = await load_during(s, fill_redis)
        evicted = int(client.info("stats")["evicted_keys"])
        refused = oom_errors(client) - oom_before
    finally:
        client.config_set("maxmemory", "200mb")
        client.close()
    outcome = await finish(s)
    report(
        "Redis at maxmemory (volatile-lru), then room again",
        outcome,
        recovery,
        f"{evicted} dedup buckets evicted, {refused} writes refused (OOM → journal)",
    )
    assert evicted > 0 and refused > 0, "the scenario must reach eviction and OOM"
    assert s.views.by_phase.get(1), "views are accepted while Redis refuses writes"
    assert outcome.views.lost == 0
    # Only a repeat of a pair whose bucket was evicted counts again: at most a full bucket each.
    assert outcome.views.doubled <= evicted * (BUCKET_CAP + 1)
    assert outcome.entries_lost == 0 and outcome.entries_stuck == 0


def oom_errors(client: sync_redis.Redis) -> int:
    stats = client.info("errorstats")
    return int(stats.get("errorstat_OOM", {}).get("count", 0))
