"""A Redis (one server or a cluster) and a PostgreSQL started and stopped together:
:class:`DevStack` and the :func:`dev_stack` context manager."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from kaleido.devstack.cluster import RedisCluster
from kaleido.devstack.postgres import PostgresServer
from kaleido.devstack.process import DevStackError
from kaleido.devstack.redis import RedisServer

# The Redis configuration Kaleido is tested with: package data, so that a pip install's
# private servers run with it too (the repository's top-level redis.conf links to it).
SHIPPED_REDIS_CONF = Path(__file__).resolve().parent / "redis.conf"


def default_redis_conf() -> Path:
    """The shipped redis.conf, which the private servers include."""
    return SHIPPED_REDIS_CONF


@attrs.define
class DevStack:
    """A private Redis (one server, or a :class:`RedisCluster`) and PostgreSQL pair."""

    redis: RedisServer | RedisCluster
    postgres: PostgresServer

    @property
    def redis_url(self) -> str:
        """The Redis (a cluster's seed nodes) as its admin, the default user."""
        return self.redis.url

    def redis_url_for(self, user: str, password: str) -> str:
        """The same Redis as another user (made with ``ACL SETUSER``)."""
        return self.redis.url_for(user, password)

    @property
    def cluster(self) -> RedisCluster:
        """The Redis Cluster of a stack started with ``cluster=True``."""
        if not isinstance(self.redis, RedisCluster):
            raise DevStackError("this dev stack runs a single redis-server, not a cluster")
        return self.redis

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def start(self, timeout: float = 60) -> None:
        """Start both, overlapping their start-up; on failure stop whatever started."""
        deadline = time.monotonic() + timeout
        try:
            # Launch both before waiting for either: redis boots while initdb/copy runs.
            self.redis._launch_process(deadline)
            self.postgres._launch_process(deadline)
            self.redis._await_ready(deadline)
            self.postgres._await_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Stop both (in parallel), even if stopping one of them fails."""
        deadline = time.monotonic() + timeout
        self.redis._begin_stop()
        self.postgres._begin_stop()
        try:
            self.postgres._finish_stop(deadline)
        finally:
            self.redis._finish_stop(deadline)


@contextlib.contextmanager
def dev_stack(
    state_dir: Path,
    redis_conf: Path | None,
    *,
    fast: bool = False,
    redis_overrides: dict[str, str] | None = None,
    timeout: float = 60,
    cluster: bool = False,
) -> Iterator[DevStack]:
    """Start redis-server in ``state_dir/"redis"`` and PostgreSQL in ``state_dir/"postgres"``;
    stop both when the block exits, however it exits (exception, KeyboardInterrupt).

    With ``cluster``, a :class:`RedisCluster` of 3 masters and 3 replicas in
    ``state_dir/"redis-cluster"`` replaces the single redis-server (``redis_overrides`` apply to
    every node). Call it from the main thread (see :mod:`kaleido.devstack`).
    """
    state_dir = Path(state_dir)
    overrides = redis_overrides or {}
    redis: RedisServer | RedisCluster
    if cluster:
        redis = RedisCluster(state_dir / "redis-cluster", conf=redis_conf, overrides=overrides)
    else:
        redis = RedisServer(state_dir / "redis", conf=redis_conf, overrides=overrides)
    stack = DevStack(redis=redis, postgres=PostgresServer(state_dir / "postgres", fast=fast))
    stack.start(timeout)
    try:
        yield stack
    finally:
        stack.stop()
