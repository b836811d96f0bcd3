"""The campaign's backends: a redis-server with AOF or a Redis Cluster (3 masters, 3 replicas,
AOF), and a PostgreSQL, each behind fault proxies, with the operations the nemesis injects.

Servers are started and restarted from one long-lived thread per backend: the dev stack ties a
server's life to the thread that spawned it (PR_SET_PDEATHSIG), and the trio loop must not
block on a restart (it runs the proxies and the traffic).

On the cluster every node announces its proxy's port (`cluster-announce-port`), so clients
(Kaleido, the stream feeder) reach every node through its proxy, MOVED redirections included.
A master is SIGKILLed or stalled only after `CLIENT PAUSE WRITE` and its replica caught up:
writes acknowledged before the fault are on the replica that takes over. What Redis Cluster
loses without that (asynchronous replication) is Redis', and tests/faults measures it.

PostgreSQL runs with `synchronous_commit = on` (the dev stack's fast mode turns it off): a
SIGKILLed PostgreSQL then keeps every commit it acknowledged, as a production one does.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import attrs
import redis as sync_redis
import trio

from kaleido.devstack import (
    DevStackError,
    PostgresServer,
    RedisCluster,
    RedisClusterNode,
    RedisServer,
    parse_cluster_nodes,
)

from ..conftest import REPO
from .proxy import FaultProxy

T = TypeVar("T")

# The spawning thread is one that lives as long as the campaign (see the module docstring).
warnings.filterwarnings("ignore", message="kaleido.devstack: a server started from a non-main")

AOF = {"appendonly": "yes", "appendfsync": "always"}
# How long a replica may take to catch up with a paused master before the fault goes ahead
# anyway (and is reported as such).
CATCH_UP = 10.0
# How long the cluster may take to decide about a master that was stalled: its replica starts a
# failover once cluster-node-timeout (2 s) has passed, and the election takes up to about 1 s.
SETTLE_AFTER_STALL = 4.0


class _Thread:
    """One long-lived thread that runs blocking server operations, awaited from trio."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[[], T]) -> T:
        future = self._pool.submit(fn)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    def call(self, fn: Callable[[], T]) -> T:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _redis(port: int, timeout: float = 2.0, password: str | None = None) -> sync_redis.Redis:
    return sync_redis.Redis(
        port=port, password=password, socket_timeout=timeout, socket_connect_timeout=timeout
    )


@attrs.define
class Stack:
    """The backends of one campaign, and the faults the nemesis injects into them."""

    kind: str  # "single" or "cluster"
    dir: Path
    seed: int = 0
    aof: bool = True  # False: the seed's `appendonly no` (a documented window)
    redis: RedisServer | RedisCluster = attrs.field(init=False)
    postgres: PostgresServer = attrs.field(init=False)
    redis_proxies: dict[int, FaultProxy] = attrs.Factory(dict)  # real port → its proxy
    postgres_proxy: FaultProxy = attrs.field(init=False)
    notes: list[str] = attrs.Factory(list)  # what a fault could not do as planned
    _redis_thread: _Thread = attrs.Factory(lambda: _Thread("campaign-redis"))
    _postgres_thread: _Thread = attrs.Factory(lambda: _Thread("campaign-postgres"))
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if self.kind == "cluster":
            self.redis = RedisCluster(
                self.dir / "redis-cluster", conf=REPO / "redis.conf", overrides=dict(AOF)
            )
        else:
            self.redis = RedisServer(
                self.dir / "redis", conf=REPO / "redis.conf", overrides=dict(AOF)
            )
        self.postgres = PostgresServer(
            self.dir / "postgres", fast=True, settings={"synchronous_commit": "on"}
        )

    # -- life

    async def start(self, nursery: trio.Nursery) -> None:
        os.chmod(self.dir, 0o755)
        await self._postgres_thread.run(self.postgres.start)
        await self._redis_thread.run(self.redis.start)
        self.postgres_proxy = FaultProxy(self.postgres.port, seed=self._rng.randrange(2**32))
        await nursery.start(self.postgres_proxy.run)
        for port in self.redis_ports:
            proxy = FaultProxy(port, seed=self._rng.randrange(2**32))
            await nursery.start(proxy.run)
            self.redis_proxies[port] = proxy
        if isinstance(self.redis, RedisCluster):
            await self._redis_thread.run(self._announce_proxies)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._redis_thread.call(self.redis.stop)
        with contextlib.suppress(Exception):
            self._postgres_thread.call(self.postgres.stop)
        self._redis_thread.close()
        self._postgres_thread.close()

    @property
    def redis_ports(self) -> list[int]:
        if isinstance(self.redis, RedisCluster):
            return self.redis.ports
        return [self.redis.port]

    @property
    def redis_url(self) -> str:
        """Kaleido's Redis: through the proxies."""
        if isinstance(self.redis, RedisCluster):
            masters = [self.redis_proxies[n.port].port for n in self._masters()]
            seeds = ",".join(f"127.0.0.1:{p}" for p in masters)
            return f"redis+cluster://default:{self.redis.password}@{seeds}"
        return f"redis://default:{self.redis.password}@127.0.0.1:{self.proxy_port}/0"

    @property
    def proxy_port(self) -> int:
        """The single Redis's proxy."""
        return self.redis_proxies[self.redis_ports[0]].port

    @property
    def database_url(self) -> str:
        """Kaleido's PostgreSQL: through the proxy."""
        password = self.postgres.password
        return f"postgresql://postgres:{password}@127.0.0.1:{self.postgres_proxy.port}/kaleido"

    @property
    def direct_database_url(self) -> str:
        return self.postgres.url

    @property
    def proxies(self) -> dict[str, list[FaultProxy]]:
        return {"redis": list(self.redis_proxies.values()), "postgres": [self.postgres_proxy]}

    def client(self) -> sync_redis.Redis | sync_redis.RedisCluster:
        """A blocking client (of the whole cluster, through the proxies, on a cluster)."""
        if isinstance(self.redis, RedisCluster):
            node = self._masters()[0]
            return sync_redis.RedisCluster(
                host="127.0.0.1",
                port=self.redis_proxies[node.port].port,
                password=self.redis.password,
                socket_timeout=5,
            )
        return _redis(self.redis.port, 5, password=self.redis.password)

    # -- the cluster's view of itself, with announced (proxy) ports mapped back

    def _real_port(self, announced: int) -> int:
        for real, proxy in self.redis_proxies.items():
            if proxy.port == announced:
                return real
        return announced  # a node that has not announced its proxy yet

    def _topology(
        self, asking_not: RedisClusterNode | None = None
    ) -> list[tuple[int, str, str | None, bool, bool]]:
        """(real port, node id, master id, is master with slots, failing) per node, as the
        first node that answers sees it (never `asking_not`)."""
        assert isinstance(self.redis, RedisCluster)
        for node in self.redis.nodes:
            if not node.running or node is asking_not:
                continue
            with contextlib.suppress(OSError, sync_redis.RedisError):
                client = _redis(node.port, 0.5, password=self.redis.password)
                try:
                    text = client.execute_command("CLUSTER", "NODES")
                finally:
                    client.close()
                if isinstance(text, bytes):
                    text = text.decode()
                return [
                    (
                        self._real_port(v.port),
                        v.node_id,
                        v.master_id,
                        v.is_master and bool(v.slots),
                        v.failing,
                    )
                    for v in parse_cluster_nodes(str(text))
                ]
        raise DevStackError("no node of the redis cluster answers")

    def _masters(self) -> list[RedisClusterNode]:
        assert isinstance(self.redis, RedisCluster)
        ports = [p for p, _, _, master, failing in self._topology() if master and not failing]
        return [self.redis.node(p) for p in sorted(ports)]

    def _replica_of(self, master: RedisClusterNode) -> RedisClusterNode | None:
        assert isinstance(self.redis, RedisCluster)
        topology = self._topology()
        ids = [i for p, i, _, _, _ in topology if p == master.port]
        for port, _, master_id, _, _ in topology:
            if ids and master_id == ids[0]:
                node = self.redis.node(port)
                if node.running:
                    return node
        return None

    def _announce_proxies(self) -> None:
        assert isinstance(self.redis, RedisCluster)
        for node in self.redis.nodes:
            if node.running:
                client = _redis(node.port, password=self.redis.password)
                try:
                    client.config_set("cluster-announce-port", self.redis_proxies[node.port].port)
                finally:
                    client.close()
        self._wait_announced()

    def _wait_announced(self, timeout: float = 30) -> None:
        """Until every running node sees every node at its proxy's port, every slot served."""
        assert isinstance(self.redis, RedisCluster)
        proxies = {p.port for p in self.redis_proxies.values()}
        deadline = time.monotonic() + timeout
        while True:
            good = True
            for node in self.redis.nodes:
                if not node.running:
                    continue
                try:
                    client = _redis(node.port, 0.5, password=self.redis.password)
                    try:
                        text = client.execute_command("CLUSTER", "NODES")
                        info = client.execute_command("CLUSTER", "INFO")
                    finally:
                        client.close()
                except (OSError, sync_redis.RedisError):
                    good = False
                    break
                text = text.decode() if isinstance(text, bytes) else str(text)
                info = info.decode() if isinstance(info, bytes) else str(info)
                views = parse_cluster_nodes(text)
                link = client_info(node.port, self.redis.password)
                if (
                    link is None
                    or "cluster_state:ok" not in info
                    or any(
                        v.port not in proxies or v.failing
                        for v in views
                        if self._real_port(v.port)
                        in {n.port for n in self.redis.nodes if n.running}
                    )
                ):
                    good = False
                    break
            if good:
                return
            if time.monotonic() > deadline:
                raise DevStackError("the cluster's nodes do not all announce their proxies")
            time.sleep(0.05)

    # -- Redis faults

    def _pause_until_replicated(self, node: RedisClusterNode, hold: float) -> bool:
        """CLIENT PAUSE WRITE on a master, then wait until its replica has every write it
        acknowledged. Returns whether the replica caught up."""
        replica = self._replica_of(node)
        client = _redis(node.port, password=self.redis.password)
        try:
            client.execute_command("CLIENT", "PAUSE", int(hold * 1000), "WRITE")
            written = int(client.info("replication")["master_repl_offset"])
        finally:
            client.close()
        if replica is None:
            return False
        deadline = time.monotonic() + CATCH_UP
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, sync_redis.RedisError):
                probe = _redis(replica.port, 0.5, password=self.redis.password)
                try:
                    info = probe.info("replication")
                finally:
                    probe.close()
                if (
                    info.get("master_link_status") == "up"
                    and int(info.get("slave_repl_offset", -1)) >= written
                ):
                    return True
            time.sleep(0.01)
        return False

    def _pause_or_refuse(self, node: RedisClusterNode, hold: float) -> None:
        """`_pause_until_replicated`, or unpause and refuse the fault: a master whose replica
        lags (stalled, still syncing) would take acknowledged writes with it, which is Redis
        Cluster's asynchronous replication, not Kaleido."""
        if not self._pause_until_replicated(node, hold):
            self._unpause(node)
            raise RuntimeError(f"the replica of {node.port} is behind: not injected")

    def _unpause(self, node: RedisClusterNode) -> None:
        with contextlib.suppress(OSError, sync_redis.RedisError):
            client = _redis(node.port, password=self.redis.password)
            try:
                client.execute_command("CLIENT", "UNPAUSE")
            finally:
                client.close()

    def _pick_master(self, pick: float) -> RedisClusterNode:
        masters = self._masters()
        return masters[int(pick * len(masters))]

    async def drop_redis_clients(self, by_address: bool, pick: float) -> str:
        """CLIENT KILL TYPE normal on every node, or one client of each by address."""

        def drop() -> str:
            killed = 0
            for port in self.redis_ports:
                with contextlib.suppress(OSError, sync_redis.RedisError):
                    client = _redis(port, 1, password=self.redis.password)
                    try:
                        if by_address:
                            me = client.client_id()
                            others = [
                                c for c in client.client_list(_type="normal") if int(c["id"]) != me
                            ]
                            if others:
                                victim = others[int(pick * len(others))]
                                killed += int(client.client_kill_filter(_id=victim["id"]))
                        else:
                            killed += int(
                                client.execute_command("CLIENT", "KILL", "TYPE", "normal")
                            )
                    finally:
                        client.close()
            return f"{'one by address' if by_address else 'TYPE normal'}: {killed} closed"

        return await trio.to_thread.run_sync(drop)

    async def stall_redis(self, seconds: float, pick: float) -> str:
        """SIGSTOP for `seconds`, then SIGCONT (on a cluster: one master, paused first)."""
        if isinstance(self.redis, RedisServer):
            self.redis.pause()
            try:
                await trio.sleep(seconds)
            finally:
                self.redis.resume()
            return f"{seconds:.1f} s"
        node = await self._redis_thread.run(lambda: self._pick_master(pick))
        hold = seconds + SETTLE_AFTER_STALL + 90  # the pause outlasts the settling below
        await self._redis_thread.run(lambda: self._pause_or_refuse(node, hold))
        node.pause()
        try:
            await trio.sleep(seconds)
        finally:
            node.resume()
        replaced = await self._redis_thread.run(lambda: self._settle_after_stall(node))
        await self._redis_thread.run(lambda: self._after_node_fault(node))
        return f"{seconds:.1f} s, node {node.port}" + (
            ", its replica took over" if replaced else ""
        )

    def _settle_after_stall(self, node: RedisClusterNode) -> bool:
        """Keep the resumed master's writes paused until it knows what the others decided
        meanwhile; True when its replica took over. A stall longer than cluster-node-timeout
        has its replica elected, and a node resumed still believing it is the master would run
        the writes it held, acknowledge them, and lose them when it learns it was replaced:
        Redis Cluster's split-brain window, not Kaleido's."""
        time.sleep(SETTLE_AFTER_STALL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # (ValueError: the others do not list the node yet)
            with contextlib.suppress(OSError, sync_redis.RedisError, DevStackError, ValueError):
                others = self._topology(asking_not=node)
                role = self._role(node)
                [(_, _, _, master, _)] = [t for t in others if t[0] == node.port]
                settled = not any(failing for *_, failing in others)
                if settled and master == (role == "master"):
                    return not master
            time.sleep(0.05)
        raise DevStackError(f"{node.port} and the other nodes disagree about its role")

    def _after_node_fault(self, node: RedisClusterNode) -> None:
        self._unpause(node)
        self._wait_announced(60)

    async def restart_redis(self, down: float, pick: float) -> str:
        """Single: SIGKILL, `down` seconds, restart from the AOF. Cluster: a master SIGKILLed,
        its replica takes over, the old master rejoins as a replica."""
        if isinstance(self.redis, RedisServer):
            server = self.redis
            await self._redis_thread.run(server.kill)
            await trio.sleep(down)
            await self._redis_thread.run(server.start)
            return f"down {down:.1f} s"
        node = await self._redis_thread.run(lambda: self._pick_master(pick))

        def kill() -> None:
            self._pause_or_refuse(node, 60)
            node.kill()

        await self._redis_thread.run(kill)
        self.redis_proxies[node.port].reset_all()
        started = time.monotonic()

        def failover() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError, DevStackError):
                    topology = self._topology()
                    masters = [p for p, _, _, m, f in topology if m and not f]
                    if len(masters) == 3 and node.port not in masters:
                        return
                time.sleep(0.05)
            raise DevStackError(f"no replica took over from {node.port}")

        await self._redis_thread.run(failover)
        took = time.monotonic() - started
        await trio.sleep(down)

        def rejoin() -> None:
            node.start(30)
            client = _redis(node.port, password=self.redis.password)
            try:
                client.config_set("cluster-announce-port", self.redis_proxies[node.port].port)
            finally:
                client.close()
            cluster_ok = time.monotonic() + 60
            self._wait_announced(max(1.0, cluster_ok - time.monotonic()))

        # Restarted, the node believes for a moment that it is still the master: clients reach
        # it only once it knows it was replaced (else it would acknowledge writes it then loses,
        # Redis' window); until then their connections hang, as behind a black hole.
        proxy = self.redis_proxies[node.port]
        proxy.open_hole()
        try:
            await self._redis_thread.run(rejoin)
            await self._redis_thread.run(lambda: self._wait_role(node, "slave"))
        finally:
            proxy.close_hole()
        return f"master {node.port}, failover in {took:.1f} s"

    def _role(self, node: RedisClusterNode) -> str:
        """What the node believes it is: "master" or "slave"."""
        client = _redis(node.port, 0.5, password=self.redis.password)
        try:
            return str(client.info("replication")["role"])
        finally:
            client.close()

    def _wait_role(self, node: RedisClusterNode, role: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, sync_redis.RedisError):
                if self._role(node) == role:
                    return
            time.sleep(0.05)
        raise DevStackError(f"{node.port} is not a {role} {within:g} s after it restarted")

    # -- PostgreSQL faults

    async def drop_postgres_sessions(self) -> str:
        def drop() -> str:
            out = self.postgres.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "AND application_name <> 'psql' AND datname = 'kaleido'",
                timeout=5,
            )
            return f"{out.strip()} terminated"

        try:
            return await trio.to_thread.run_sync(drop)
        except DevStackError as exc:
            return f"psql failed: {str(exc).splitlines()[0]}"

    async def stall_postgres(self, seconds: float) -> str:
        pids = self.postgres.cluster_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            await trio.sleep(seconds)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        return f"{seconds:.1f} s, {len(pids)} processes"

    async def restart_postgres(self, down: float, crash: bool) -> str:
        stop = self.postgres.kill if crash else self.postgres.stop
        await self._postgres_thread.run(stop)
        await trio.sleep(down)
        await self._postgres_thread.run(self.postgres.start)
        return f"{'SIGKILL' if crash else 'fast shutdown'}, down {down:.1f} s"

    # -- the documented windows (only where a scenario names them)

    async def flushall(self) -> str:
        def flush() -> str:
            for port in self.redis_ports:
                with contextlib.suppress(OSError, sync_redis.RedisError):
                    client = _redis(port, password=self.redis.password)
                    try:
                        if client.info("replication")["role"] == "master":
                            client.flushall()
                    finally:
                        client.close()
            return "every master flushed"

        return await trio.to_thread.run_sync(flush)

    async def fill_redis(self, seconds: float) -> str:
        """A ballast without TTL takes Redis past maxmemory for `seconds`: volatile-lru evicts
        dedup data, then writes are refused (OOM); then room again."""
        assert isinstance(self.redis, RedisServer)
        client = _redis(self.redis.port, 5, password=self.redis.password)

        def fill() -> int:
            before = int(client.info("stats")["evicted_keys"])
            client.set("campaign:ballast", b"x" * (6 * 1024 * 1024))
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used - 1024 * 1024)
            return before

        def empty(before: int) -> str:
            client.delete("campaign:ballast")
            client.config_set("maxmemory", "200mb")
            evicted = int(client.info("stats")["evicted_keys"]) - before
            return f"{seconds:.1f} s full, {evicted} keys evicted"

        try:
            before = await trio.to_thread.run_sync(fill)
            await trio.sleep(seconds)
            return await trio.to_thread.run_sync(lambda: empty(before))
        finally:
            client.close()


def client_info(port: int, password: str) -> dict[str, object] | None:
    """A node's INFO replication, or None while it is a replica whose link is not up (or it
    does not answer)."""
    try:
        client = _redis(port, 0.5, password=password)
        try:
            info: dict[str, object] = client.info("replication")
        finally:
            client.close()
    except (OSError, sync_redis.RedisError):
        return None
    if info.get("role") == "slave" and info.get("master_link_status") != "up":
        return None
    return info
