"""Attack: another local account connects to the private servers of `make run` (or of the test
suite): they listen on 127.0.0.1, which every account reaches. Every server asks for a password
it keeps in a file only its owner reads (PostgreSQL by SCRAM only, Redis by `requirepass`), and
`make run`'s Kaleido runs as its own least-privilege Redis user, whose URL the other commands
find in the state folder."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import trio

from kaleido.devstack import DevStack, RedisServer, postgres_bindir

from ..cli_helpers import output
from ..conftest import REPO
from ..processes import free_port, kaleido_env, start_kaleido, wait_exit, wait_ready


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def redis_reply(port: int, *lines: bytes) -> bytes:
    """The first reply line to the raw commands `lines`, as any local account could send."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"".join(line + b"\r\n" for line in lines))
        return s.makefile("rb").readline().strip()


def psql(port: int, password: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"} | ({"PGPASSWORD": password} if password else {})
    return subprocess.run(
        [
            *(str(postgres_bindir() / "psql"), "-w", "-h", "127.0.0.1", "-p", str(port)),
            *("-U", "postgres", "-d", "kaleido", "-Atc", "select 1"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )


def test_the_files_that_hold_a_password_are_the_owners_alone(stack: DevStack) -> None:
    assert isinstance(stack.redis, RedisServer)
    redis, postgres = stack.redis, stack.postgres
    for path in (redis.dir / "password", redis.conf_path, postgres.password_file):
        assert private(path), path
    hba = postgres.data_dir / "pg_hba.conf"
    assert private(hba)
    rules = [line.split() for line in hba.read_text().splitlines() if not line.startswith("#")]
    assert rules and all(rule[0] == "host" and rule[-1] == "scram-sha-256" for rule in rules)


def test_redis_refuses_a_connection_without_the_password(stack: DevStack) -> None:
    assert isinstance(stack.redis, RedisServer)
    port = stack.redis.port
    assert redis_reply(port, b"PING").startswith(b"-NOAUTH")
    assert redis_reply(port, b"CONFIG GET requirepass").startswith(b"-NOAUTH")
    assert redis_reply(port, b"AUTH default guess").startswith(b"-WRONGPASS")
    assert redis_reply(port, f"AUTH default {stack.redis.password}".encode()) == b"+OK"


def test_postgres_refuses_a_connection_without_the_password(stack: DevStack) -> None:
    port = stack.postgres.port
    refused = psql(port, None)
    assert refused.returncode != 0 and "no password supplied" in refused.stderr
    wrong = psql(port, "guess")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    assert psql(port, stack.postgres.password).stdout == "1\n"


@pytest.mark.slow
def test_every_node_of_a_cluster_refuses_a_connection_without_the_password(
    cluster_stack: DevStack,
) -> None:
    cluster = cluster_stack.cluster
    assert private(cluster.dir / "password")
    for node in cluster.nodes:
        assert private(node.conf_path)
        assert redis_reply(node.port, b"CLUSTER NODES").startswith(b"-NOAUTH"), node.port


@pytest.mark.slow
async def test_make_run_runs_as_its_own_user_and_the_commands_find_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = kaleido_env(KALEIDO_STATE_DIR=str(state), KALEIDO_HTTP_BIND=f"127.0.0.1:{port}")
    proc = start_kaleido(["--dev"], env)
    try:
        await wait_ready(port, proc, timeout=60)
        assert stat.S_IMODE(state.stat().st_mode) & 0o077 in (0, 0o001)  # at most search
        urls = state / "dev-urls.env"
        assert private(urls)
        assert "KALEIDO_REDIS_URL=redis://kaleido:" in urls.read_text()
        # Every connection of the service is Kaleido's own user, never the admin.
        clients = redis_clients(RedisServer(state / "redis"), port_of(urls))
        assert clients and all(c["user"] == "kaleido" for c in clients if c["name"] == "kaleido")
        # The other commands find the servers with no URL set.
        with trio.fail_after(60):
            doctor = await trio.run_process(
                [str(REPO / ".venv" / "bin" / "kaleido"), "doctor", "--dlq-interval", "0.1"],
                env=kaleido_env(KALEIDO_STATE_DIR=str(state), KALEIDO_LOG_FORMAT="console"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        text = output(doctor)
        assert doctor.returncode == 0, text + doctor.stderr.decode()
        assert "OK       scripts: function library version" in text
        assert "lacks a right" not in text
        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, timeout=15) == 0
        assert not urls.exists()  # gone with the servers
    finally:
        if proc.poll() is None:
            proc.kill()


def port_of(urls: Path) -> int:
    line = next(x for x in urls.read_text().splitlines() if x.startswith("KALEIDO_REDIS_URL="))
    return int(line.rsplit(":", 1)[1].split("/")[0])


def redis_clients(server: RedisServer, port: int) -> list[dict[str, str]]:
    """CLIENT LIST, as the admin (the password from the state folder)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(f"AUTH default {server.password}\r\nCLIENT LIST\r\n".encode())
        stream = s.makefile("rb")
        assert stream.readline().strip() == b"+OK"
        size = int(stream.readline()[1:])
        body = stream.read(size + 2).decode()
    return [
        dict(field.split("=", 1) for field in line.split() if "=" in field)
        for line in body.splitlines()
        if line
    ]
