"""The fault suite on a Redis Cluster (3 masters, a replica each, `appendonly yes`), with the
same workloads and ground-truth model as tests/faults/test_faults.py.

- A master SIGKILLed under load: its replica takes over. Replication is asynchronous, so a write
  acknowledged by the master and not yet sent to its replica is lost at the takeover; the
  scenario samples the replica's lag (bytes behind the master) until the kill, so the report
  says how wide that window was. Outside it nothing may be lost, doubled or stuck.
- A worker of `--workers 2` SIGKILLed at random moments (syncs every 0.5 s, so some kills land
  mid-sync) while the other one serves: the supervisor restarts it; nothing lost or doubled.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
import trio
from redis.crc import key_slot

from kaleido.devstack import DevStack, RedisCluster, RedisClusterNode, dev_stack
from kaleido.settings import Settings

from ..conftest import REPO
from ..processes import children
from .harness import EntryWorkload, ServiceProcess, ViewWorkload
from .scenarios import (
    ROWS_WITH_POSTS,
    Scenario,
    assert_clean,
    finish,
    load_during,
    report,
    until_serving,
)

pytestmark = pytest.mark.slow

# How often the replica's lag is sampled before the kill.
LAG_SAMPLE = 0.01


@pytest.fixture
def cluster_fault_stack(tmp_path: Path) -> Iterator[DevStack]:
    os.chmod(tmp_path, 0o755)
    overrides = {"appendonly": "yes"}
    with dev_stack(
        tmp_path, REPO / "redis.conf", fast=True, cluster=True, redis_overrides=overrides
    ) as stack:
        yield stack


async def open_scenario(stack: DevStack, tmp_path: Path, args: list[str]) -> Scenario:
    settings = Settings(redis_url=stack.redis_url, database_url=stack.database_url)
    service = ServiceProcess(
        stack.redis_url, stack.database_url, log_path=tmp_path / "kaleido.log", args=args
    )
    await service.start()
    await trio.to_thread.run_sync(
        stack.postgres.psql,
        f"INSERT INTO posts (post_id, user_id) SELECT g, 1 FROM generate_series(1, "
        f"{ROWS_WITH_POSTS}) g",
    )
    return Scenario(
        stack, settings, service, ViewWorkload(service.base_url), EntryWorkload(stack.redis_url)
    )


@pytest.fixture
async def one_process(cluster_fault_stack: DevStack, tmp_path: Path) -> AsyncIterator[Scenario]:
    s = await open_scenario(cluster_fault_stack, tmp_path, [])
    try:
        yield s
    finally:
        s.service.close()


@pytest.fixture
async def two_workers(cluster_fault_stack: DevStack, tmp_path: Path) -> AsyncIterator[Scenario]:
    s = await open_scenario(cluster_fault_stack, tmp_path, ["--workers", "2"])
    try:
        yield s
    finally:
        workers = children(s.service.proc.pid) if s.service.proc else []
        s.service.close()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def replication_offset(node: RedisClusterNode, field: str) -> int:
    client = sync_redis.Redis.from_url(node.url, socket_timeout=1)
    try:
        return int(client.info("replication")[field])
    finally:
        client.close()


def replica_of(cluster: RedisCluster, master: RedisClusterNode) -> RedisClusterNode:
    views = cluster.topology()
    (master_id,) = [v.node_id for v in views if v.port == master.port]
    (replica,) = [v.port for v in views if v.master_id == master_id]
    return cluster.node(replica)


def replica_lag(master: RedisClusterNode, replica: RedisClusterNode) -> int:
    """Bytes of the master's replication stream its replica had not received: the master's
    offset, then the replica's own (read in that order, so a lag is never overstated)."""
    written = replication_offset(master, "master_repl_offset")
    received = replication_offset(replica, "slave_repl_offset")
    return max(0, written - received)


async def test_cluster_master_sigkill_under_load(one_process: Scenario) -> None:
    s = one_process
    cluster = s.stack.cluster
    victim = cluster.master_nodes()[0]
    replica = replica_of(cluster, victim)
    lags: list[int] = []
    took_over: list[float] = []

    async def kill_master() -> float:
        deadline = trio.current_time() + 2.0  # two seconds of load, sampling the lag
        while trio.current_time() < deadline:
            lags.append(await trio.to_thread.run_sync(replica_lag, victim, replica))
            await trio.sleep(LAG_SAMPLE)
        cluster.kill_node(victim)
        started = time.monotonic()
        await trio.to_thread.run_sync(cluster.wait_for_failover, victim)
        took_over.append(time.monotonic() - started)
        return await until_serving(s, started)

    recovery = await load_during(s, kill_master, before=0.5, after=2.0)
    cluster.restart_node(victim)  # back as a replica (from this thread: see kaleido.devstack)
    outcome = await finish(s)
    behind = sum(1 for lag in lags if lag)
    note = (
        f"replica took over in {took_over[0]:.1f} s; replica lag before the kill: "
        f"{behind} of {len(lags)} samples behind, max {max(lags)} B, "
        f"median {statistics.median(lags):.0f} B; {wait_cost(cluster)}"
    )
    report(
        "Redis Cluster master SIGKILL under load (appendonly yes), replica takes over",
        outcome,
        recovery,
        note,
    )
    assert outcome.entries_stuck == 0
    if not behind:  # the window was never open: the outcome must be exact
        assert_clean(outcome)


def wait_cost(cluster: RedisCluster, rounds: int = 200) -> str:
    """What `WAIT 1 0` (block until the replica has the write) adds to one write."""
    key = "kaleido-fault:wait-probe"
    master = cluster.master_for_slot(key_slot(key.encode()))
    client = sync_redis.Redis.from_url(master.url, socket_timeout=5)
    plain, waited = [], []
    try:
        for index in range(rounds):
            started = time.perf_counter()
            client.set(key, index)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.set(key, index)
            client.execute_command("WAIT", 1, 0)
            waited.append(time.perf_counter() - started)
    finally:
        client.close()
    extra = (statistics.median(waited) - statistics.median(plain)) * 1000
    return f"WAIT 1 0 after a write adds {extra:.2f} ms (median of {rounds})"


async def test_worker_sigkill_mid_sync_on_a_cluster(two_workers: Scenario) -> None:
    s = two_workers
    assert s.service.proc is not None
    supervisor = s.service.proc.pid
    rng = random.Random(11)
    replaced: list[float] = []

    async def kill_workers() -> float:
        for _ in range(3):
            await trio.sleep(rng.uniform(0.3, 1.2))  # a random moment under load
            workers = children(supervisor)
            assert len(workers) == 2
            victim = rng.choice(workers)
            os.kill(victim, signal.SIGKILL)
            started = time.monotonic()
            with trio.fail_after(30):
                while True:  # the supervisor starts a new worker; it is ready when it serves
                    now = children(supervisor)
                    if len(now) == 2 and victim not in now:
                        break
                    await trio.sleep(0.05)
            await until_serving(s, started)
            replaced.append(time.monotonic() - started)
        return max(replaced)

    recovery = await load_during(s, kill_workers)
    outcome = await finish(s)
    report(
        "Redis Cluster: one of 2 workers SIGKILL ×3 (syncs every 0.5 s), the other serving",
        outcome,
        recovery,
        "recovery: until the replacement worker was started and a view was accepted",
    )
    assert_clean(outcome)
