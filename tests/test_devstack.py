"""kaleido.devstack: private redis-server / Redis Cluster / PostgreSQL lifecycles, and that none
outlives us."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import redis.cluster

from kaleido.devstack import (
    ClusterNodeView,
    DevStack,
    DevStackError,
    PostgresServer,
    RedisCluster,
    RedisServer,
    dev_stack,
    parse_cluster_nodes,
    pid_alive,
    process,
    topology,
)
from kaleido.devstack import cluster as dev_cluster
from kaleido.devstack import postgres as dev_postgres
from kaleido.devstack import redis as dev_redis
from kaleido.devstack import server as dev_server

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
    password = redis_server.password
    assert redis_server.url == f"redis://default:{password}@127.0.0.1:{redis_server.port}/0"
    with client(redis_server.url) as r:
        assert r.ping()
    with (
        client(f"redis://127.0.0.1:{redis_server.port}/0") as r,
        pytest.raises(redis.AuthenticationError),
    ):
        r.ping()  # without the password: refused
    assert (redis_server.dir / "password").stat().st_mode & 0o077 == 0
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
        real_free_port = process._free_port
        monkeypatch.setattr(dev_server, "_free_port", lambda: next(ports, None) or real_free_port())
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
    password = pg_server.password
    assert pg_server.url == f"postgresql://postgres:{password}@127.0.0.1:{pg_server.port}/kaleido"
    assert pg_server.password_file.stat().st_mode & 0o077 == 0
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
        assert isinstance(stack.redis, RedisServer)
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

cluster = sys.argv[2] == "cluster"
with dev_stack(Path(sys.argv[1]), None, fast=True, cluster=cluster) as stack:
    redis_pids = stack.cluster.pids if cluster else [stack.redis.pid]
    print(*redis_pids, stack.postgres.pid, flush=True)
    time.sleep(3600)
"""


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_servers_die_with_a_sigkilled_parent(tmp_path: Path, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path), mode],
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
        assert len(pids) == (7 if mode == "cluster" else 2)
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
    real = dev_postgres._make_reachable
    calls: list[Path] = []

    def skip_first(path: Path, account: process._RunAs) -> None:
        calls.append(path)
        if len(calls) > 1:
            real(path, account)

    monkeypatch.setattr(dev_postgres, "_make_reachable", skip_first)
    server = PostgresServer(locked / "pg", fast=True)
    try:
        server.start()
        assert server.psql("select 1") == "1\n"
        # Met by the first server process: the one that sets the password, or the postmaster.
        first = server.dir / "single-user.log"
        assert "Permission denied" in first.read_text() + server.log_path.read_text()
        assert len(calls) == 2
    finally:
        server.stop()


# -- redis cluster

NODES_REPLY = """\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host-b master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master - 0 1426238318243 3 connected 10923-16383 [93->-e7d1]
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5459 5460
6ec2 127.0.0.1:30005@40005 master,fail - 1426238316232 0 5 disconnected
"""


def test_parse_cluster_nodes() -> None:
    views = {v.port: v for v in parse_cluster_nodes(NODES_REPLY)}
    assert sorted(views) == [30001, 30002, 30003, 30004, 30005]
    me = views[30001]
    assert me.node_id == "e7d1" and me.is_master and "myself" in me.flags
    assert me.slots == ((0, 5459), (5460, 5460)) and me.slot_count == 5461
    assert me.owns(5460) and not me.owns(5461)
    assert views[30002].slots == ((5461, 10922),)
    assert views[30003].slots == ((10923, 16383),)  # the migrating slot is left out
    replica = views[30004]
    assert not replica.is_master and replica.master_id == "e7d1" and replica.slots == ()
    assert views[30005].failing and not me.failing
    assert sum(v.slot_count for v in views.values()) == 16384


def test_judge_cluster() -> None:
    healthy_info = {"cluster_state": "ok", "cluster_slots_ok": "16384", "cluster_known_nodes": "5"}
    master = {"role": "master"}
    up = {"role": "slave", "master_link_status": "up"}
    view = parse_cluster_nodes(NODES_REPLY)

    def report(port: int, **changes: Any) -> topology._NodeReport:
        base = topology._NodeReport(port, healthy_info, view, master)
        return attrs.evolve(base, **changes)

    judge = topology._judge_cluster
    healthy = judge([report(30001), report(30004, replication=up)], 5)
    assert healthy.problem is None and healthy.view == view
    assert judge([], 5).problem == "no node runs"
    failed = judge([report(30001, cluster_info={**healthy_info, "cluster_state": "fail"})], 5)
    assert failed.problem == "node 30001 reports cluster_state:fail"
    assert judge([report(30001)], 6).problem == "node 30001 reports cluster_known_nodes:5"
    moved = parse_cluster_nodes(NODES_REPLY.replace("0-5459 5460", "0-5459"))
    assert judge([report(30001), report(30002, view=moved)], 5).problem == (
        "nodes 30001 and 30002 disagree on the cluster"
    )
    # 30005 is flagged as failing: fine while it is down, a problem once it runs again
    assert judge([report(30001), report(30005)], 5).problem == (
        "node 30001 sees running nodes [30005] as failing"
    )
    down = {"role": "slave", "master_link_status": "down"}
    assert judge([report(30004, replication=down)], 5).problem == (
        "replica 30004 has its master link down"
    )


def test_cluster_ports_leave_room_for_the_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    good = dev_redis._cluster_port(())
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        bus_taken = squatter.getsockname()[1] - 10000
        assert bus_taken > 1024
        # bus port above 65535, a port to avoid, one whose bus port is taken, then a good one
        offers = iter([60000, 40000, bus_taken, good])
        monkeypatch.setattr(dev_redis, "_free_port", lambda: next(offers))
        assert dev_redis._cluster_port({40000}) == good


def test_cluster_rejects_managed_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster-enabled"):
        RedisCluster(tmp_path, overrides={"cluster-enabled": "no"})
    with pytest.raises(ValueError, match="port"):
        RedisCluster(tmp_path, overrides={"port": "7000"})


def test_cluster_without_redis_cli_starts_no_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "redis-cli" else real_which(name)
    )
    cluster = RedisCluster(tmp_path)
    with pytest.raises(DevStackError, match="redis-cli is not on PATH"):
        cluster.start()
    assert cluster.pids == []
    with pytest.raises(DevStackError, match="not been created"):
        _ = cluster.url


def test_a_new_cluster_clears_what_the_previous_one_left(tmp_path: Path) -> None:
    node = tmp_path / "node-1"
    (node / "appendonlydir").mkdir(parents=True)
    for name in ("nodes-7000.conf", "dump.rdb", "appendonlydir/a.aof", "redis.log", "keep.txt"):
        (node / name).write_text("x")
    dev_cluster._clear_node_files(node)
    assert sorted(p.name for p in node.iterdir()) == ["keep.txt", "redis.log"]


def cluster_client(url: str) -> redis.cluster.RedisCluster:
    assert url.startswith("redis+cluster://")
    credentials, _, hosts = url.removeprefix("redis+cluster://").rpartition("@")
    user, _, password = credentials.partition(":")
    seeds = [seed.rpartition(":") for seed in hosts.split(",")]
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(host, int(port)) for host, _, port in seeds],
        username=user or None,
        password=password or None,
        decode_responses=True,
        socket_timeout=2,
    )


def assert_three_masters_three_replicas(views: tuple[ClusterNodeView, ...]) -> None:
    masters = [v for v in views if v.is_master and v.slots]
    replicas = [v for v in views if not v.is_master]
    assert len(masters) == 3 and len(replicas) == 3
    ranges = sorted(r for m in masters for r in m.slots)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))  # no gap
    assert sorted(r.master_id or "" for r in replicas) == sorted(m.node_id for m in masters)


def assert_cluster_gone(cluster: RedisCluster, pids: list[int]) -> None:
    for pid in pids:
        assert_gone(pid)
    for node in cluster.nodes:
        assert process._cwd_pids(node.dir) == []  # no redis-server (nor a fork of one) left
        assert process._port_bindable(node.port) and process._port_bindable(node.bus_port)


def test_dev_stack_cluster_serves_keys_and_stops_every_node(tmp_path: Path) -> None:
    started = time.monotonic()
    with dev_stack(tmp_path, REPO / "redis.conf", fast=True, cluster=True) as stack:
        elapsed = time.monotonic() - started
        cluster = stack.cluster
        pids = cluster.pids
        assert len(pids) == 6
        views = cluster.topology()
        assert_three_masters_three_replicas(views)
        masters = [n.port for n in cluster.master_nodes()]
        seeds = ",".join(f"127.0.0.1:{p}" for p in masters)
        assert stack.redis_url == f"redis+cluster://default:{cluster.password}@{seeds}"
        for node in cluster.nodes:
            assert node.nodes_conf.exists() and node.dir.parent == tmp_path / "redis-cluster"
            with client(node.url) as r:
                assert r.config_get("cluster-enabled") == {"cluster-enabled": "yes"}
                # the shipped redis.conf is included
                assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-lru"}
        with cluster_client(stack.redis_url) as rc:
            for i in range(30):
                rc.set(f"key:{i}", str(i))
            assert [rc.get(f"key:{i}") for i in range(30)] == [str(i) for i in range(30)]
        for port in masters:  # the keys are spread over every master
            with client(cluster.node(port).url) as r:
                assert r.dbsize() > 0
        assert not (tmp_path / "redis").exists()  # no single redis-server besides
    assert elapsed < 20, f"the cluster stack took {elapsed:.1f}s to start"
    assert_cluster_gone(cluster, pids)
    assert stack.postgres.cluster_pids() == []
    with pytest.raises(DevStackError, match="single redis-server"):
        _ = DevStack(redis=RedisServer(tmp_path), postgres=stack.postgres).cluster


def test_cluster_failover_rejoin_and_restart(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path, conf=REPO / "redis.conf")
    try:
        cluster.start()
        url = cluster.url
        with cluster_client(url) as rc:
            rc.set("survivor", "yes")
            slot = rc.keyslot("survivor")
        victim = cluster.master_for_slot(slot)
        with client(victim.url) as r:
            assert r.wait(1, 2000) == 1  # the replica has the key before its master dies
        before = {v.port: v for v in cluster.topology()}
        (heir,) = [v.port for v in before.values() if v.master_id == before[victim.port].node_id]
        pid = victim.pid
        assert pid is not None

        started = time.monotonic()
        assert cluster.kill_master(cluster.master_nodes().index(victim)) is victim
        assert_gone(pid)
        promoted = cluster.wait_for_failover(victim, timeout=20)
        took = time.monotonic() - started
        # node timeout (2 s), then the election: well within the deadline
        assert took < 15, f"failover took {took:.1f}s"
        assert promoted.port == heir
        assert cluster.master_for_slot(slot) is promoted
        with cluster_client(url) as rc:  # the seed list still works with a seed gone
            assert rc.get("survivor") == "yes"

        cluster.restart_node(victim)  # same port, same node file: back as a replica
        after = {v.port: v for v in cluster.topology()}
        assert after[victim.port].node_id == before[victim.port].node_id
        assert not after[victim.port].is_master
        assert after[victim.port].master_id == after[heir].node_id
        assert_three_masters_three_replicas(tuple(after.values()))

        cluster.restart()  # the whole cluster, on the same ports
        assert cluster.url == url
        assert_three_masters_three_replicas(cluster.topology())
        with cluster_client(url) as rc:
            assert rc.set("again", "1") and rc.get("again") == "1"
    finally:
        pids = cluster.pids
        cluster.stop()
    assert_cluster_gone(cluster, pids)
