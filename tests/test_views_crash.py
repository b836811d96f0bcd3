"""Crash safety: a syncer process SIGKILLed at each step of the protocol, then a new one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import trio

from kaleido.gateways import Backends
from kaleido.settings import Settings
from kaleido.views.sync import APPLY_CONCURRENCY
from kaleido.views.totals import read_total

from .conftest import REPO
from .processes import servers_env
from .views_helpers import create_posts, pg_view_counts, redis_leftovers, store_of

pytestmark = pytest.mark.slow


def run_sync(
    settings: Settings, failpoint: str | None, lock_ttl: float = 30
) -> subprocess.CompletedProcess[str]:
    env = servers_env(settings, KALEIDO_SYNC_LOCK_TTL=str(lock_ttl))
    if failpoint:
        env["KALEIDO_FAILPOINTS"] = failpoint
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "sync", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("failpoint", ["sync.after_move", "sync.after_commit", "sync.after_forget"])
async def test_sigkill_at_each_step_loses_and_doubles_nothing(
    backends: Backends, settings: Settings, failpoint: str
) -> None:
    await create_posts(backends, *range(1, 21))
    store = store_of(backends)
    views = [(u, p) for p in range(1, 26) for u in range(1, p + 1)]  # posts 21-25 have no row
    expected = {p: p for p in range(1, 26)}
    await store.record(views)

    crashed = await trio.to_thread.run_sync(run_sync, settings, failpoint, 10)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # the dead syncer's lock lives on for at most its KALEIDO_SYNC_LOCK_TTL
    assert 0 < await backends.redis.execute("PTTL", "view:batch:lock") <= 10_000
    # mid-crash, every total is still exact
    for post, count in expected.items():
        assert (await read_total(store, backends.postgres, post)).views == count
    # let it expire now
    await backends.redis.execute("DEL", "view:batch:lock")

    await store.record([(1000, 1)])  # a view arriving between the crash and the recovery
    expected[1] += 1
    recovered = await trio.to_thread.run_sync(run_sync, settings, None)
    assert recovered.returncode == 0, recovered.stderr
    report = json.loads(recovered.stdout)
    if failpoint == "sync.after_commit":
        # the batch killed after its COMMIT, and maybe the one being applied beside it
        assert 1 <= report["skipped_batches"] <= APPLY_CONCURRENCY
    assert await pg_view_counts(backends) == expected
    assert await redis_leftovers(backends) == []


async def test_sync_command_reports_a_busy_lock(backends: Backends, settings: Settings) -> None:
    await backends.redis.execute("SET", "view:batch:lock", "someone-else", "PX", 60000)
    busy = await trio.to_thread.run_sync(run_sync, settings, None)
    assert busy.returncode == 1
    assert "already running" in busy.stderr
