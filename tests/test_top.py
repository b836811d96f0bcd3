"""`kaleido top`: snapshots of a running service rendered to a recorded console, the command
itself (`--once`), and Ctrl-C ending the live dashboard cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio
from rich.console import Console

from kaleido.app import Running, service_of
from kaleido.messages import INBOUND_STREAMS, INSIGHTS_STREAM, POST_IMAGE_STREAM
from kaleido.ops.redis_info import RedisFacts
from kaleido.ops.streams import GroupStatus, StreamStatus
from kaleido.ops.top import Snapshot, TopCollector, render
from kaleido.settings import Settings

from .cli_helpers import assert_no_traceback, kaleido, output
from .conftest import REPO
from .processes import servers_env
from .service_helpers import client, ops_client
from .streams_helpers import xadd
from .views_helpers import create_posts

pytestmark = pytest.mark.redis_kinds("single", "cluster")

TOKEN = {"Authorization": "Bearer test-admin-token-0123456789"}


def screen(snapshot: Snapshot) -> str:
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(snapshot))
    text = console.export_text()
    console.file.close()
    return text


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("│")[1:-1]]


async def test_top_shows_live_figures_of_a_running_service(running: Running) -> None:
    backends = service_of(running).backends
    base = "http://" + running.ops_addresses[0].split("://")[-1]
    collector = TopCollector(backends, base)
    await create_posts(backends, 5)
    async with client(running) as http:
        assert (await http.post("/v1/views", json={"userId": 1, "postId": 5})).status_code == 202
        async with ops_client(running) as ops:
            assert (await ops.post("/v1/admin/sync", headers=TOKEN)).status_code == 200
        first = await collector.snapshot()
        assert first.ingest_rate is None  # a rate needs two samples
        assert "measuring" in screen(first)
        views = [{"userId": u, "postId": 5} for u in range(2, 12)]
        assert (await http.post("/v1/views", json=views)).status_code == 202
    for _ in range(3):
        await xadd(backends, POST_IMAGE_STREAM, {"postId": "5", "mediaId": "1"})
    second = await collector.snapshot()

    assert second.errors == ()
    assert second.ingest_rate is not None and second.ingest_rate > 0
    assert second.pending_views == 1
    assert second.breakers == {"redis": "closed", "postgres": "closed"}
    text = screen(second)
    assert f"{second.ingest_rate:,.1f} views/s" in line_with(text, "ingest rate")
    assert "1 posts" in line_with(text, "pending views")
    assert "s ago" in line_with(text, "last sync")
    masters = len(await backends.redis.master_names())  # each with redis.conf's 200 MB
    assert f"/ {200 * masters} MB" in line_with(text, "memory")
    assert "volatile-lru" in line_with(text, "policy")
    outbound = cells(line_with(text, POST_IMAGE_STREAM))
    assert outbound == [f"{POST_IMAGE_STREAM} (no group)", "3", "0", "0", "—", "—"]
    for stream in INBOUND_STREAMS:
        assert stream in text
    assert "redis closed" in text and "postgres closed" in text


def test_render_shows_what_is_unknown_and_what_is_wrong() -> None:
    facts = RedisFacts(
        used_memory=190 * 1048576, maxmemory=200 * 1048576, policy="allkeys-lru",
        evicted_keys=12, keyspace_hits=5, keyspace_misses=7, aof_enabled=False,
    )  # fmt: skip
    group = GroupStatus("backend-group", 12_345, 7, 42.0, ())
    snap = Snapshot(
        taken_at=1_700_000_000.0,
        redis=facts,
        pending_views=3,
        streams=(StreamStatus(INSIGHTS_STREAM, True, 20_000, 4, (group,)),),
        last_sync_at=1_700_000_000.0 - 1800,
        breakers={"redis": "open"},
        errors=("PostgreSQL: connection refused",),
        service_url="http://127.0.0.1:8080",
    )
    text = screen(snap)
    assert "95%" in line_with(text, "memory")
    assert "allkeys-lru" in text
    assert "30 min ago" in line_with(text, "last sync")
    row = cells(line_with(text, INSIGHTS_STREAM))
    assert row == [INSIGHTS_STREAM, "20,000", "12,345", "7", "42 s", "4"]
    assert "redis open" in text
    assert "unavailable: PostgreSQL: connection refused" in text
    empty = screen(Snapshot(taken_at=1_700_000_000.0))
    assert "— (needs --url)" in empty and "none yet" in empty


async def test_top_once_prints_one_screen(settings: Settings) -> None:
    result = await kaleido(settings, "top", "--once")
    assert result.returncode == 0, result.stderr.decode()
    text = output(result)
    assert "kaleido top" in text and "source: Redis + PostgreSQL" in text
    assert INSIGHTS_STREAM in text and "pending views" in text
    down = await kaleido(settings, "top", "--once", "--url", "http://127.0.0.1:1")
    assert down.returncode == 0
    assert "unavailable: http://127.0.0.1:1/metrics" in output(down)
    assert_no_traceback(down)


async def test_ctrl_c_ends_top_cleanly(settings: Settings) -> None:
    env = servers_env(settings)
    command = [sys.executable, str(REPO / "run.py"), "top", "--refresh", "0.2"]
    proc = await trio.lowlevel.open_process(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    seen = b""
    try:
        with trio.fail_after(30):
            # Piped, top prints frame after frame: wait for the second one to start.
            while seen.count(b"kaleido top") < 2:
                chunk = await proc.stdout.receive_some()
                assert chunk, b"top exited early: " + await proc.stderr.receive_some()
                seen += chunk
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            while chunk := await proc.stdout.receive_some():
                seen += chunk
            errors = b""
            while chunk := await proc.stderr.receive_some():
                errors += chunk
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, errors.decode()
    assert b"Traceback" not in seen + errors, errors.decode()
    assert b"source: Redis + PostgreSQL" in seen and INSIGHTS_STREAM.encode() in seen
