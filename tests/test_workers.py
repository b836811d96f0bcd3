"""`kaleido run --workers N`: N service processes on one port, restarted when they die, stopped
together, reporting one set of metrics."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaleido.gateways import Backends
from kaleido.messages import CONSUMER_GROUP, INSIGHTS_STREAM
from kaleido.ops.streams import read_streams
from kaleido.settings import Settings, load_settings, settings_to_env
from kaleido.workers import worker_instance

from .processes import children, free_port, kaleido_env, start_kaleido, wait_exit, wait_ready
from .waiting import wait_until

ADMIN = "test-admin-token-0123456789"


# ---------------------------------------------------------------- how settings reach a worker


@given(
    port=st.integers(0, 65535),
    interval=st.floats(0.001, 1e6, allow_nan=False),
    prefix=st.from_regex(r"[A-Za-z0-9_.:{}-]{0,20}", fullmatch=True),
    workers=st.integers(1, 64),
    host=st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"]),
)
def test_settings_survive_the_trip_to_a_worker(
    port: int, interval: float, prefix: str, workers: int, host: str
) -> None:
    settings = Settings(
        redis_url="redis+cluster://a:1,b:2",
        database_url="postgresql://u:secret@db:5432/k",
        http_host=host,
        http_port=port,
        sync_interval=interval,
        key_prefix=prefix,
        workers=workers,
        admin_token="x" * 20,
    )
    assert load_settings(settings_to_env(settings)) == settings


def test_worker_instances_are_stable_and_distinct() -> None:
    assert [worker_instance("", i) for i in range(3)] == ["w0", "w1", "w2"]
    assert worker_instance("eu1", 1) == "eu1-w1"


# ---------------------------------------------------------------- the processes


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


class Pool:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, ops_port: int) -> None:
        self.proc, self.port, self.ops_port = proc, port, ops_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def workers(self, n: int) -> list[int]:
        async def ready() -> bool:
            return len(children(self.proc.pid)) == n

        await wait_until(ready, timeout=30)
        return children(self.proc.pid)

    async def post_views(self, views: list[tuple[int, int]]) -> None:
        # A new client: new connections, accepted by whichever worker is accepting now.
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            for user, post in views:
                r = await http.post("/v1/views", json=[{"userId": user, "postId": post}])
                assert r.status_code == 202, r.text

    async def counted(self) -> float:
        ops = f"http://127.0.0.1:{self.ops_port}"
        async with httpx.AsyncClient(base_url=ops, timeout=10) as http:
            text = (await http.get("/metrics")).text
        counted = 'kaleido_views_total{outcome="counted"}'
        line = next(ln for ln in text.splitlines() if ln.startswith(counted))
        return float(line.split()[-1])


def pool_env(settings: Settings, port: int, ops_port: int, **extra: str) -> dict[str, str]:
    assert settings.redis_url and settings.database_url
    return kaleido_env(
        KALEIDO_REDIS_URL=settings.redis_url,
        KALEIDO_DATABASE_URL=settings.database_url,
        KALEIDO_HTTP_BIND=f"127.0.0.1:{port}",
        KALEIDO_OPS_BIND=f"127.0.0.1:{ops_port}",
        KALEIDO_ADMIN_TOKEN=ADMIN,
        KALEIDO_SHUTDOWN_DEADLINE="5",
        **extra,
    )


@pytest.fixture
async def pool(settings: Settings, backends: Backends, tmp_path: Path) -> AsyncIterator[Pool]:
    port, ops_port = free_port(), free_port()
    with (tmp_path / "kaleido.log").open("wb") as log:  # a pipe nobody reads would fill up
        proc = start_kaleido(["--workers", "2"], pool_env(settings, port, ops_port), log)
    try:
        await wait_ready(port, proc, timeout=30)
        yield Pool(proc, port, ops_port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
async def test_two_workers_share_the_port_and_one_metrics_endpoint(pool: Pool) -> None:
    await pool.workers(2)
    # Each view on a connection of its own: SO_REUSEPORT spreads connections over both workers
    # by their addresses (all 40 on one worker: a chance of 2^-39).
    for user in range(1, 41):
        await pool.post_views([(user, 7)])
    # Every scrape, whichever worker answers it, reports both workers' views.
    for _ in range(6):
        assert await pool.counted() == 40


@pytest.mark.slow
async def test_each_worker_consumes_under_its_own_stable_name(
    pool: Pool, backends: Backends
) -> None:
    async def names() -> set[str]:
        statuses = await read_streams(backends.redis, backends.keys)
        (insights,) = [s for s in statuses if s.stream == INSIGHTS_STREAM]
        return {c.name for g in insights.groups if g.name == CONSUMER_GROUP for c in g.consumers}

    expected = {"media-ai-consumer-w0", "media-ai-consumer-w1"}

    async def both_reading() -> bool:
        return await names() == expected

    await wait_until(both_reading, timeout=20)
    first, _ = await pool.workers(2)
    os.kill(first, signal.SIGKILL)

    async def replaced() -> bool:
        pids = children(pool.proc.pid)
        return len(pids) == 2 and first not in pids

    await wait_until(replaced, timeout=20)
    await wait_ready(pool.port, pool.proc, timeout=30)
    await pool.post_views([(1, 1)])  # the pool still serves
    assert await names() == expected  # the new worker took the dead one's name


@pytest.mark.slow
async def test_sigterm_stops_every_worker(pool: Pool) -> None:
    workers = await pool.workers(2)
    pool.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(pool.proc, timeout=15) == 0
    assert not any(alive(pid) for pid in workers)  # reaped, not orphaned


@pytest.mark.slow
async def test_workers_stop_when_their_supervisor_is_killed(pool: Pool) -> None:
    workers = await pool.workers(2)
    pool.proc.kill()
    pool.proc.wait()

    async def gone() -> bool:
        return not any(alive(pid) for pid in workers)

    await wait_until(gone, timeout=20)


@pytest.mark.slow
async def test_a_configuration_error_in_the_workers_stops_the_pool(
    settings: Settings, backends: Backends
) -> None:
    await backends.redis.execute("HSET", backends.keys.layout, "version", "2", "partitions", "8")
    port = free_port()
    proc = start_kaleido(["--workers", "2"], pool_env(settings, port, free_port()))
    try:
        assert await wait_exit(proc, timeout=30) == 2
        assert proc.stderr is not None
        assert b"KALEIDO_VIEW_PARTITIONS" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        # Tests that do not flush Redis first must not meet this layout.
        await backends.redis.execute("DEL", backends.keys.layout)
