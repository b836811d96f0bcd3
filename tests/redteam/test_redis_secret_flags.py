"""Attack: read Kaleido's secrets in `ps`. Every local user sees a process's arguments, so a
secret given as a flag (a token, the JWT secret, a password in the Redis or PostgreSQL URL)
stops start-up at once, with one line naming the variable or file to use, and without the
secret in it."""

from __future__ import annotations

import base64
import sys

import pytest
import trio

from ..cli_helpers import output
from ..conftest import REPO
from ..processes import kaleido_env

SECRET = "hunter2-" + "x" * 32
JWT = base64.b64encode(SECRET.encode()).decode()


@pytest.mark.parametrize(
    ("flag", "value", "variable"),
    [
        ("--jwt-secret", JWT, "KALEIDO_JWT_SECRET"),
        ("--admin-token", SECRET, "KALEIDO_ADMIN_TOKEN"),
        ("--service-token", SECRET, "KALEIDO_SERVICE_TOKEN"),
        ("--redis-url", f"redis://kaleido:{SECRET}@127.0.0.1:6379/0", "KALEIDO_REDIS_URL"),
        ("--database-url", f"postgresql://app:{SECRET}@127.0.0.1/k", "KALEIDO_DATABASE_URL"),
    ],
)
@pytest.mark.parametrize("command", [[], ["doctor"]])
async def test_a_secret_as_a_flag_stops_start_up(
    flag: str, value: str, variable: str, command: list[str]
) -> None:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, str(REPO / "run.py"), *command, flag, value],
            env=kaleido_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and output(done) == ""
    assert lines == [
        f"kaleido: configuration error: {flag}: "
        f"{'a URL with a password' if flag.endswith('-url') else 'a secret'} is not accepted as "
        "a flag (every local user can read a process's arguments); "
        f"set {variable} or {variable}_FILE"
    ]
    assert SECRET not in done.stderr.decode() and JWT not in done.stderr.decode()
