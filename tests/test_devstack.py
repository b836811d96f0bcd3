"""kaleido.devstack: private redis-server / PostgreSQL lifecycles, and that none outlives us."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from kaleido import devstack
from kaleido.devstack import (
    DevStackError,
    PostgresServer,
    RedisServer,
    dev_stack,
    pid_alive,
)

REPO = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def assert_gone(pid: int) -> None:
    """The pid was our child and was reaped: signalling it must fail."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg", fast=True)
    yield server
    server.stop()


# -- redis


def test_redis_start_ping_stop(redis_server: RedisServer) -> None:
    redis_server.start()
    pid = redis_server.pid
    assert pid is not None
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with client(redis_server.url) as r:
        assert r.ping()
    redis_server.stop()
    assert redis_server.pid is None
    assert_gone(pid)
    redis_server.stop()  # idempotent


def test_redis_includes_conf_then_overrides_then_managed(tmp_path: Path) -> None:
    conf = tmp_path / "redis.conf"
    conf.write_text("maxmemory-policy volatile-lru\nport 1\ndaemonize yes\nmaxmemory 1mb\n")
    server = RedisServer(tmp_path / "r", conf=conf, overrides={"maxmemory": "5mb", "save": ""})
    server.start()
    try:
        assert server.port != 1
        with client(server.url) as r:
            assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-lru"}
            assert r.config_get("maxmemory") == {"maxmemory": str(5 * 1024 * 1024)}
            assert r.config_get("save") == {"save": ""}
            assert r.config_get("daemonize") == {"daemonize": "no"}
    finally:
        server.stop()


def test_redis_rejects_managed_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        RedisServer(tmp_path, overrides={"port": "6379"})


def test_redis_kill_then_restart_keeps_url_and_aof_data(redis_server: RedisServer) -> None:
    redis_server.overrides.update(appendonly="yes", appendfsync="always")
    redis_server.start()
    url, pid = redis_server.url, redis_server.pid
    assert pid is not None
    with client(url) as r:
        r.set("k", "v")
    redis_server.kill()
    assert_gone(pid)
    with client(url) as r, pytest.raises(redis.ConnectionError):
        r.ping()
    redis_server.restart()
    assert redis_server.url == url
    assert redis_server.pid not in (None, pid)
    with client(url) as r:
        assert r.get("k") == "v"


def test_redis_pause_resume(redis_server: RedisServer) -> None:
    redis_server.start()
    with redis.Redis.from_url(redis_server.url, socket_timeout=0.2) as r:
        assert r.ping()
        redis_server.pause()
        with pytest.raises(redis.TimeoutError):
            r.ping()
        redis_server.resume()
        wait_for(lambda: _ping(redis_server.url), 5, "redis to answer after SIGCONT")


def test_paused_redis_still_stops(redis_server: RedisServer) -> None:
    redis_server.start()
    pid = redis_server.pid
    assert pid is not None
    redis_server.pause()
    started = time.monotonic()
    redis_server.stop(timeout=5)
    assert time.monotonic() - started < 4  # SIGCONT let SIGTERM act: no SIGKILL timeout
    assert_gone(pid)


def _ping(url: str) -> bool:
    try:
        with client(url) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


def test_redis_bad_config_reports_log_tail(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, overrides={"maxmemory": "banana"})
    with pytest.raises(DevStackError, match=r"(?s)exited with code 1.*maxmemory"):
        server.start()
    assert server.pid is None


def test_redis_moves_to_another_port_when_the_picked_one_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = devstack._free_port
        monkeypatch.setattr(devstack, "_free_port", lambda: next(ports, None) or real_free_port())
        server = RedisServer(tmp_path)
        server.start()
        try:
            assert server.port != taken
            assert _ping(server.url)
            assert "Address already in use" in server.log_path.read_text()
        finally:
            server.stop()


# -- postgres


def test_postgres_start_query_stop(pg_server: PostgresServer) -> None:
    pg_server.start()
    pid = pg_server.pid
    assert pid is not None
    assert pg_server.url == f"postgresql://postgres@127.0.0.1:{pg_server.port}/kaleido"
    if os.geteuid() == 0:  # PostgreSQL refuses root: it must have switched user
        owner = os.stat(f"/proc/{pid}").st_uid
        assert owner in (pwd.getpwnam(n).pw_uid for n in ("postgres", "nobody") if _user(n))
    assert pg_server.psql("select 1") == "1\n"
    assert pg_server.psql("select current_database()") == "kaleido\n"
    assert pg_server.psql("show fsync") == "off\n"
    assert pid in pg_server.cluster_pids()
    pg_server.stop()
    assert pg_server.pid is None
    assert_gone(pid)
    assert pg_server.cluster_pids() == []
    pg_server.stop()  # idempotent


def _user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_postgres_kill_then_restart_recovers(pg_server: PostgresServer) -> None:
    pg_server.settings["synchronous_commit"] = "on"  # a crash must not lose the row
    pg_server.start()
    url, pid = pg_server.url, pg_server.pid
    assert pid is not None
    pg_server.psql("create table t (x int); insert into t values (42)")
    pg_server.kill()
    assert_gone(pid)
    pg_server.restart()  # waits for the orphaned backends, then crash recovery
    assert pg_server.url == url
    assert pg_server.psql("select x from t") == "42\n"
    assert "was interrupted" in pg_server.log_path.read_text()
    pg_server.stop()
    assert pg_server.cluster_pids() == []


def test_postgres_bad_setting_reports_log_tail(pg_server: PostgresServer) -> None:
    pg_server.settings["shared_buffers"] = "banana"
    with pytest.raises(DevStackError, match=r"(?s)postgres exited.*shared_buffers"):
        pg_server.start(timeout=20)
    assert pg_server.cluster_pids() == []


# -- both


def test_dev_stack_stops_both_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), dev_stack(tmp_path, None, fast=True) as stack:
        pids = (stack.redis.pid, stack.postgres.pid)
        assert _ping(stack.redis_url)
        assert stack.postgres.psql("select 1") == "1\n"
        assert stack.database_url.endswith("/kaleido")
        raise RuntimeError("boom")
    for pid in pids:
        assert pid is not None
        assert_gone(pid)
    assert stack.postgres.cluster_pids() == []


CHILD = """
import sys, time
from pathlib import Path
from kaleido.devstack import dev_stack

with dev_stack(Path(sys.argv[1]), None, fast=True) as stack:
    print(stack.redis.pid, stack.postgres.pid, flush=True)
    time.sleep(3600)
"""


def test_servers_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert child.stdout is not None and child.stderr is not None
    pids: list[int] = []
    try:
        line = child.stdout.readline()  # the child's own start-up deadline bounds this
        if not line:
            child.wait()
            pytest.fail(f"child exited without starting the stack:\n{child.stderr.read()}")
        pids = [int(p) for p in line.split()]
        assert all(pid_alive(p) for p in pids)
        child.kill()
        child.wait()
        cluster = PostgresServer(tmp_path / "postgres")
        wait_for(
            lambda: not any(map(pid_alive, pids)) and not cluster.cluster_pids(),
            15,
            f"servers {pids} to follow their SIGKILLed parent",
        )
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        for pid in pids:  # never leave servers behind, even when the test fails
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_redis_given_port_is_never_swapped(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = RedisServer(tmp_path, port=taken)
        with pytest.raises(DevStackError, match="Address already in use"):
            server.start(timeout=1)
        assert server.port == taken
        assert server.pid is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the user switch happens only as root")
def test_postgres_retries_when_its_path_became_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another pytest session resetting its basetemp to 0700 right after our chmod looks like this.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    real = devstack._make_reachable
    calls: list[Path] = []

    def skip_first(path: Path, account: devstack._RunAs) -> None:
        calls.append(path)
        if len(calls) > 1:
            real(path, account)

    monkeypatch.setattr(devstack, "_make_reachable", skip_first)
    server = PostgresServer(locked / "pg", fast=True)
    try:
        server.start()
        assert server.psql("select 1") == "1\n"
        assert "Permission denied" in server.log_path.read_text()
        assert len(calls) == 2
    finally:
        server.stop()
