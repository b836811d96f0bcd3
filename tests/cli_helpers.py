"""Running the `kaleido` command line against the test stack, as a real process."""

from __future__ import annotations

import subprocess
import sys

import trio

from kaleido.settings import Settings

from .conftest import REPO
from .processes import kaleido_env


async def kaleido(settings: Settings | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python run.py ARGS` with the test stack's URLs in the environment (none if no settings;
    nor those of a `make run` in this checkout: its state folder is not the default)."""
    urls = {"KALEIDO_STATE_DIR": str(REPO / "tests" / ".state-of-no-dev-stack")}
    if settings is not None:
        assert settings.redis_url and settings.database_url
        urls = {
            "KALEIDO_REDIS_URL": settings.redis_url,
            "KALEIDO_DATABASE_URL": settings.database_url,
        }
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, str(REPO / "run.py"), *args],
            env=kaleido_env(KALEIDO_LOG_FORMAT="console", **urls),
            cwd=REPO,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def output(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def assert_no_traceback(result: subprocess.CompletedProcess[bytes]) -> None:
    both = result.stdout + result.stderr
    assert b"Traceback" not in both, both.decode()
