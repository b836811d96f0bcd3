"""`make run` (`kaleido run --dev`) is found: its state file, one stack per state folder, the
admin token kept across starts, the banner; and the commands that use it say so."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from kaleido.dev_access import find_dev_stack, with_dev_urls, write_dev_urls
from kaleido.dev_run import already_running, banner, claim, refuse_urls
from kaleido.dev_token import dev_admin_token, dev_token_file, token_path
from kaleido.errors import ConfigError
from kaleido.settings import Settings

from .conftest import REPO
from .processes import free_port, kaleido_env, start_kaleido, wait_exit, wait_ready
from .waiting import wait_until

URLS = {"redis_url": "redis://kaleido:pw@127.0.0.1:6400/0", "database_url": "postgresql://p:pw@h/k"}
WITH_URLS = Settings(redis_url=URLS["redis_url"], database_url=URLS["database_url"])


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_state_file_names_the_stack_and_is_found_while_its_process_lives(
    tmp_path: Path,
) -> None:
    settings = WITH_URLS
    path = write_dev_urls(
        tmp_path, settings, http_url="http://127.0.0.1:8080", ops_url="http://127.0.0.1:9090",
        admin_token_file=tmp_path / "admin-token",
    )  # fmt: skip
    assert private(path)
    found = find_dev_stack(tmp_path)
    assert found is not None and found.pid == os.getpid()
    assert (found.redis_url, found.database_url) == (URLS["redis_url"], URLS["database_url"])
    assert found.ops_url == "http://127.0.0.1:9090"
    assert found.admin_token_file == str(tmp_path / "admin-token")
    # A command with no URL takes them; one with a URL of its own keeps its own.
    taken, stack = with_dev_urls(Settings(state_dir=tmp_path))
    assert stack == found and taken.redis_url == URLS["redis_url"]
    mine = Settings(state_dir=tmp_path, redis_url="redis://elsewhere:1/0")
    assert with_dev_urls(mine) == (mine, None)


def test_a_state_file_left_by_a_killed_process_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_dev_urls(tmp_path, WITH_URLS)
    text = (tmp_path / "dev-urls.env").read_text()
    pid = f"KALEIDO_DEV_PID={os.getpid()}"
    (tmp_path / "dev-urls.env").write_text(text.replace(pid, f"KALEIDO_DEV_PID={gone.stdout}"))
    assert find_dev_stack(tmp_path) is None
    assert with_dev_urls(Settings(state_dir=tmp_path))[1] is None


def test_one_claim_per_state_folder_and_the_refusal_says_where(tmp_path: Path) -> None:
    write_dev_urls(
        tmp_path,
        WITH_URLS,
        http_url="http://127.0.0.1:8080",
        ops_url="http://127.0.0.1:9090",
    )
    with claim(tmp_path) as first:
        assert first is None
        with claim(tmp_path) as second:
            assert second == os.getpid()
        line = already_running(tmp_path, os.getpid())
        assert "\n" not in line and f"pid {os.getpid()}" in line
        assert "http://127.0.0.1:8080" in line and f"kill {os.getpid()}" in line
    with claim(tmp_path) as again:  # released with the first
        assert again is None


def test_dev_refuses_urls() -> None:
    with pytest.raises(ConfigError, match="but KALEIDO_DATABASE_URL is set: unset it"):
        refuse_urls(Settings(database_url=URLS["database_url"]))
    refuse_urls(Settings())


def test_the_admin_token_stays_across_starts_and_the_sign_in_page_can_say_where(
    tmp_path: Path,
) -> None:
    token = dev_admin_token(tmp_path)
    assert len(token) >= 32 and private(token_path(tmp_path))
    assert dev_admin_token(tmp_path) == token
    assert dev_token_file(Settings(state_dir=tmp_path, admin_token=token)) == token_path(tmp_path)
    # Another token (production's own) is not the file's: nothing is said.
    assert dev_token_file(Settings(state_dir=tmp_path, admin_token="x" * 40)) is None
    token_path(tmp_path).write_text("short\n")  # damaged: a new one
    assert dev_admin_token(tmp_path) not in (token, "short")


def test_the_banner_says_where_everything_is_and_how_to_stop(tmp_path: Path) -> None:
    write_dev_urls(
        tmp_path, WITH_URLS, http_url="http://127.0.0.1:8080",
        ops_url="http://127.0.0.1:9090", admin_token_file=tmp_path / "admin-token",
    )  # fmt: skip
    found = find_dev_stack(tmp_path)
    assert found is not None
    text = banner(found)
    for part in ("http://127.0.0.1:8080", "http://127.0.0.1:9090/ops/", "admin-token", "Ctrl-C"):
        assert part in text
    assert "pw" not in text  # passwords redacted


async def cli(state: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "kaleido", *args],
            env=kaleido_env(KALEIDO_STATE_DIR=str(state), KALEIDO_LOG_FORMAT="console"),
            cwd=REPO,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.slow
async def test_make_run_is_found_refuses_a_second_and_keeps_its_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = kaleido_env(KALEIDO_STATE_DIR=str(state), KALEIDO_HTTP_BIND=f"127.0.0.1:{port}")
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = start_kaleido(["--dev"], env, log=out)
    try:
        await wait_ready(port, proc, timeout=60)
        found = find_dev_stack(state)
        assert found is not None and found.pid == proc.pid
        assert private(found.path) and found.ops_url == f"http://{env['KALEIDO_OPS_BIND']}"

        async def banner_shown() -> bool:
            return "is running on a dev stack" in log.read_text()

        await wait_until(banner_shown, timeout=10)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text and str(token_path(state)) in text
        assert "[info" in text  # console log format, not JSON, with no format asked for

        # A second start is refused in one line, before it touches anything of the first.
        second = await cli(state, "run", "--dev")
        assert second.returncode == 1
        (line,) = second.stderr.decode().splitlines()
        assert f"a dev stack already runs from {state} (pid {proc.pid}" in line
        assert find_dev_stack(state) == found

        # The commands find it with no URL set and say so.
        streams = await cli(state, "streams", "--json")
        assert streams.returncode == 0, streams.stderr.decode()
        assert streams.stderr.decode().splitlines() == [
            f"kaleido streams: on the dev stack of `make run` (pid {proc.pid}, {found.path})"
        ]
        body = json.loads(streams.stdout)
        assert body["command"] == "streams" and body["stack"]["source"] == "dev"
        top = await cli(state, "top", "--once")
        assert top.returncode == 0 and b"unavailable" not in top.stdout, top.stdout.decode()

        # The sign-in page says where the token is.
        token = token_path(state).read_text().strip()
        async with httpx.AsyncClient(base_url=found.ops_url or "") as ops:
            page = (await ops.get("/ops/login")).text
        assert str(token_path(state)) in page and token not in page

        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, timeout=20) == 0
        assert find_dev_stack(state) is None
        gone = await cli(state, "doctor")
        assert gone.returncode == 2 and b"no dev stack runs from the state folder" in gone.stderr

        # The next start keeps the token.
        with log.open("ab") as out:
            proc = start_kaleido(["--dev"], env, log=out)
        await wait_ready(port, proc, timeout=60)
        assert token_path(state).read_text().strip() == token
        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
