"""`python run.py` as a real process on its embedded default (private Redis and PostgreSQL)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from .processes import free_port, kaleido_env, pids_under, start_kaleido, wait_exit, wait_ready
from .waiting import wait_until

pytestmark = pytest.mark.slow

# A --dev start (two private servers, the migrations, the actors) is ready within this; the
# wait itself allows longer, so that a slow start fails this bound with its figure.
READY_WITHIN = 30.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_embedded_run_is_ready_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = kaleido_env(
        KALEIDO_STATE_DIR=str(tmp_path / "state"), KALEIDO_HTTP_BIND=f"127.0.0.1:{port}"
    )
    proc = start_kaleido(["--dev"], env)
    try:
        took = await wait_ready(port, proc, timeout=4 * READY_WITHIN)
        assert took < READY_WITHIN, f"ready after {took:.1f} s, over {READY_WITHIN:g} s"
        assert len(pids_under(tmp_path)) >= 2  # redis-server and the postmaster (and backends)
        # A dev start makes an admin token for the ops console, in a file only its owner reads.
        token_file = tmp_path / "state" / "admin-token"
        assert token_file.stat().st_mode & 0o077 == 0
        bearer = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        async with httpx.AsyncClient(base_url=f"http://{env['KALEIDO_OPS_BIND']}") as ops:
            assert (await ops.get("/ops/streams", headers=bearer)).status_code == 200
        proc.send_signal(signum)
        assert await wait_exit(proc, timeout=10) == 0
        assert pids_under(tmp_path) == []
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_killed_service_leaves_no_server_behind(tmp_path: Path) -> None:
    port = free_port()
    env = kaleido_env(
        KALEIDO_STATE_DIR=str(tmp_path / "state"), KALEIDO_HTTP_BIND=f"127.0.0.1:{port}"
    )
    proc = start_kaleido(["--dev"], env)
    try:
        await wait_ready(port, proc, timeout=30)
        assert pids_under(tmp_path)
        proc.kill()
        await wait_exit(proc, timeout=5)

        async def servers_gone() -> bool:
            return pids_under(tmp_path) == []

        await wait_until(servers_gone, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_no_urls_without_dev_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py")],
        env=kaleido_env(KALEIDO_STATE_DIR=str(tmp_path), KALEIDO_REDIS_URL="redis://h:6379/0"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "set KALEIDO_DATABASE_URL, or pass --dev" in proc.stderr
    assert not any(tmp_path.iterdir())  # no throwaway server was started


def test_bad_url_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py")],
        env=kaleido_env(KALEIDO_REDIS_URL="redis://127.0.0.1:1/0", KALEIDO_DATABASE_URL="x"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "KALEIDO_DATABASE_URL: expected a postgresql:// URL" in proc.stderr
