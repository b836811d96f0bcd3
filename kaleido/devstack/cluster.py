"""A private Redis Cluster (:class:`RedisCluster`): create it with ``redis-cli --cluster create``,
start and stop its nodes, wait until it is healthy, kill a master and wait for the failover.

Every node asks for the one password of ``dir/password`` (0600) and holds Kaleido's function
library: loaded on every master whenever the cluster or a node (re)starts, replicated from there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from kaleido.devstack.process import (
    DevStackError,
    _absolute,
    _tail,
    _wait_until,
    stored_password,
)
from kaleido.devstack.redis import (
    RedisClusterNode,
    _check_cluster_overrides,
    _redis_calls,
    load_functions,
)
from kaleido.devstack.topology import (
    ClusterNodeView,
    _info_fields,
    _judge_cluster,
    _NodeReport,
    _Survey,
    parse_cluster_nodes,
)

# A master streams its first full sync after this delay, waiting for more replicas to attach;
# every replica of the dev cluster attaches at once, so waiting only slows the start-up down.
_CLUSTER_DEFAULTS = {"repl-diskless-sync-delay": "0"}
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise DevStackError("redis-cli is not on PATH (Debian: apt-get install redis-tools)")
    return found


def _clear_node_files(directory: Path) -> None:
    """Remove a previous cluster's node file and data; logs and configuration stay."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name == "appendonlydir":
            shutil.rmtree(path)
        elif path.match("nodes-*.conf") or path.name in ("dump.rdb", "appendonly.aof"):
            path.unlink()


@attrs.define
class RedisCluster:
    """A private Redis Cluster: ``masters`` masters with ``replicas`` replicas each, one
    :class:`RedisClusterNode` in each ``dir/"node-<i>"``, joined by ``redis-cli --cluster
    create``.

    Every node includes ``conf`` and applies ``overrides`` (see :class:`RedisServer`). The first
    :meth:`start` creates a new cluster on new ports, removing the node files and data that a
    previous cluster left under ``dir`` (logs stay); a later one, after :meth:`stop` or
    :meth:`kill`, brings the same nodes back on the same ports. A start returns once
    :meth:`wait_until_healthy` holds.

    :attr:`url` names the masters at creation as seed nodes; it stays the same for the life of
    this object. For failover tests: :meth:`kill_master` (or :meth:`kill_node`), then
    :meth:`wait_for_failover`, then :meth:`restart_node`.
    """

    dir: Path = attrs.field(converter=_absolute)
    conf: Path | None = None
    overrides: dict[str, str] = attrs.field(factory=dict, validator=_check_cluster_overrides)
    masters: int = attrs.field(default=3, validator=attrs.validators.ge(3))
    replicas: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    node_timeout_ms: int = 2000
    nodes: tuple[RedisClusterNode, ...] = attrs.field(init=False)
    _seeds: tuple[int, ...] = attrs.field(default=(), init=False, repr=False)
    _created: bool = attrs.field(default=False, init=False, repr=False)
    _slots_at_kill: dict[int, tuple[tuple[int, int], ...]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _password: str | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        overrides = {**_CLUSTER_DEFAULTS, **self.overrides}
        self.nodes = tuple(
            RedisClusterNode(
                self.dir / f"node-{i}",
                conf=self.conf,
                overrides=overrides,
                password_file=self.dir / "password",
                node_timeout_ms=self.node_timeout_ms,
                avoid=self._ports_in_use,
            )
            for i in range(1, self.masters * (1 + self.replicas) + 1)
        )

    def _ports_in_use(self) -> set[int]:
        return {p for n in self.nodes if n.port for p in (n.port, n.bus_port)}

    # -- what tests look at

    @property
    def url(self) -> str:
        """``redis+cluster://default:PASSWORD@127.0.0.1:p1,127.0.0.1:p2,...``: the masters at
        creation, as the default (admin) user."""
        return self.url_for("default", self.password)

    def url_for(self, user: str, password: str) -> str:
        """:attr:`url` as another user."""
        if not self._seeds:
            raise DevStackError("the redis cluster has not been created yet: start it")
        seeds = ",".join(f"127.0.0.1:{port}" for port in self._seeds)
        return f"redis+cluster://{user}:{password}@{seeds}"

    @property
    def password(self) -> str:
        """The default user's password on every node."""
        if self._password is None:
            self._password = stored_password(self.dir / "password")
        return self._password

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The (host, port) pairs of :attr:`url`, for a cluster client's startup nodes."""
        return [("127.0.0.1", port) for port in self._seeds]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        """The pids of the nodes that run."""
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def running(self) -> bool:
        """Whether any node runs."""
        return any(node.running for node in self.nodes)

    def node(self, port: int) -> RedisClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def topology(self) -> tuple[ClusterNodeView, ...]:
        """``CLUSTER NODES`` as the first node that answers sees it (sorted by port)."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(OSError, DevStackError):
                    reply = _redis_calls(node.port, ("CLUSTER", "NODES"), password=self.password)
                    return parse_cluster_nodes(reply[0])
        raise DevStackError("no node of the redis cluster answers")

    def master_nodes(self) -> list[RedisClusterNode]:
        """The masters serving slots (not failing), in slot order (index 0 serves slot 0)."""
        masters = [v for v in self.topology() if v.is_master and v.slots and not v.failing]
        masters.sort(key=lambda v: min(first for first, _ in v.slots))
        return [self.node(v.port) for v in masters]

    def master_for_slot(self, slot: int) -> RedisClusterNode:
        for view in self.topology():
            if view.is_master and view.owns(slot):
                return self.node(view.port)
        raise DevStackError(f"no master serves slot {slot}")

    # -- lifecycle of the whole cluster

    def start(self, timeout: float = 30) -> None:
        """Start every node (and create the cluster the first time); return once healthy."""
        deadline = time.monotonic() + timeout
        try:
            self._launch_process(deadline)
            self._await_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop every node (in parallel); SIGKILL what is left after ``timeout``. Idempotent."""
        self._begin_stop()
        self._finish_stop(time.monotonic() + timeout)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()

    def restart(self, timeout: float = 30) -> None:
        """Stop every node, then bring the same cluster back on the same ports."""
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP every node."""
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()

    def _launch_process(self, deadline: float) -> None:
        if self.running:
            raise DevStackError(f"the redis cluster is already running (pids {self.pids})")
        if not self._created:
            _redis_cli_binary()  # fail before any node starts
            for node in self.nodes:
                _clear_node_files(node.dir)
        for node in self.nodes:
            node._launch_process(deadline)

    def _await_ready(self, deadline: float) -> None:
        for node in self.nodes:
            node._await_ready(deadline)
        if not self._created:
            self._create(deadline)
            self._created = True
        self._wait_for("the cluster to be healthy", lambda _: None, deadline)
        if not self._seeds:
            self._seeds = tuple(node.port for node in self.master_nodes())
        self.load_functions()

    def load_functions(self) -> None:
        """Load (or replace) Kaleido's function library on every master; the replicas get it
        from theirs."""
        for node in self.master_nodes():
            load_functions(node.port, self.password)

    def _begin_stop(self) -> None:
        for node in self.nodes:
            node._begin_stop()

    def _finish_stop(self, deadline: float) -> None:
        for node in self.nodes:
            node._finish_stop(deadline)

    def _create(self, deadline: float) -> None:
        argv = [
            _redis_cli_binary(),
            *("--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes)),
            *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
        ]
        log = self.dir / "cluster-create.log"
        try:
            done = subprocess.run(
                argv,
                # The password as redis-cli reads it from the environment, not in its arguments.
                env={**os.environ, "REDISCLI_AUTH": self.password},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired as exc:
            output = _ANSI_ESCAPE.sub("", str(exc.stdout or "") + str(exc.stderr or ""))
            raise DevStackError(f"redis-cli --cluster create timed out\n{_tail(output)}") from exc
        output = _ANSI_ESCAPE.sub("", done.stdout + done.stderr)
        log.write_text(output)
        if done.returncode != 0:
            raise DevStackError(
                f"redis-cli --cluster create failed with code {done.returncode}\n"
                f"--- tail of {log} ---\n{_tail(output)}"
            )

    # -- health, failover

    def _survey(self) -> _Survey:
        """Ask every running node how it sees the cluster; :func:`_judge_cluster` judges."""
        reports = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info, nodes, replication = _redis_calls(
                    node.port,
                    ("CLUSTER", "INFO"),
                    ("CLUSTER", "NODES"),
                    ("INFO", "replication"),
                    password=self.password,
                )
            except (OSError, DevStackError) as exc:
                return _Survey(f"node {node.port} does not answer: {exc!r}")
            reports.append(
                _NodeReport(
                    port=node.port,
                    cluster_info=_info_fields(info),
                    view=parse_cluster_nodes(nodes),
                    replication=_info_fields(replication),
                )
            )
        return _judge_cluster(reports, len(self.nodes))

    def _wait_for(
        self, what: str, check: Callable[[_Survey], str | None], deadline: float
    ) -> _Survey:
        """Poll until the cluster is healthy and ``check`` finds no problem (returns None)."""
        last = _Survey("not checked yet")

        def done() -> bool:
            nonlocal last
            last = self._survey()
            if last.problem is None:
                problem = check(last)
                if problem is not None:
                    last = _Survey(problem, last.view)
            return last.problem is None

        if not _wait_until(done, deadline):
            raise DevStackError(f"redis cluster: timed out waiting for {what}: {last.problem}")
        return last

    def wait_until_healthy(self, timeout: float = 30) -> None:
        """Wait until the running nodes form a healthy cluster (see :func:`_judge_cluster`)."""
        self._wait_for("the cluster to be healthy", lambda _: None, time.monotonic() + timeout)

    def kill_node(self, node: RedisClusterNode) -> None:
        """SIGKILL ``node`` (a crash), noting first which slots it serves, for
        :meth:`wait_for_failover`."""
        self._slots_at_kill[node.port] = self._slots_of(node)
        node.kill()

    def kill_master(self, index: int = 0) -> RedisClusterNode:
        """SIGKILL the ``index``-th master of :meth:`master_nodes` and return it."""
        node = self.master_nodes()[index]
        self.kill_node(node)
        return node

    def wait_for_failover(self, killed: RedisClusterNode, timeout: float = 30) -> RedisClusterNode:
        """Wait until one running node serves every slot ``killed`` served when
        :meth:`kill_node` killed it, and the cluster is healthy; return that new master."""
        lost = self._slots_at_kill.get(killed.port)
        if not lost:
            raise DevStackError(
                f"node {killed.port} served no slots when killed (or was not killed with "
                "kill_node or kill_master)"
            )
        new_master: list[int] = []

        def replaced(survey: _Survey) -> str | None:
            for view in survey.view:
                if view.port != killed.port and all(view.owns(a) and view.owns(b) for a, b in lost):
                    new_master[:] = [view.port]
                    return None
            return f"the slots of {killed.port} have no new master yet"

        self._wait_for(
            f"a replica to take over from {killed.port}", replaced, time.monotonic() + timeout
        )
        return self.node(new_master[0])

    def restart_node(self, node: RedisClusterNode, timeout: float = 30) -> None:
        """Start a stopped or killed ``node`` again (same port, same node file); return once the
        cluster is healthy with it (a replaced master comes back as a replica)."""
        deadline = time.monotonic() + timeout
        if node.running:
            node.stop()
        node.start(max(0.0, deadline - time.monotonic()))
        self._wait_for(f"node {node.port} to rejoin", lambda _: None, deadline)
        self.load_functions()  # a master back before any failover comes back without them

    def _slots_of(self, node: RedisClusterNode) -> tuple[tuple[int, int], ...]:
        for asked in (node, *self.nodes):
            if not asked.running:
                continue
            with contextlib.suppress(OSError, DevStackError):
                reply = _redis_calls(asked.port, ("CLUSTER", "NODES"), password=self.password)[0]
                for view in parse_cluster_nodes(reply):
                    if view.port == node.port:
                        return view.slots
        return ()
