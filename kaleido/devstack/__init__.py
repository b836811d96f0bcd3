"""Private ``redis-server`` and PostgreSQL instances for development, tests and benchmarks.

Redis is one server (:class:`RedisServer`) or, with ``dev_stack(..., cluster=True)``, a Redis
Cluster of six (:class:`RedisCluster`: 3 masters, 3 replicas, created with ``redis-cli --cluster
create``) whose nodes tests can kill and restart one by one.

Synchronous on purpose (plain :mod:`subprocess`): it runs before trio starts (``run.py`` with no
URLs configured), in session-scoped pytest fixtures and in benchmarks.

Both servers run in the foreground as direct children of the calling process, each in its own
session so that a Ctrl-C in the terminal reaches only the application, which then still has its
backends while it drains and runs its last sync, and stops them afterwards.

No server outlives its parent, even one killed with SIGKILL: each child asks the kernel for a
death signal (``PR_SET_PDEATHSIG``). The kernel sends it when the parent *thread* that forked the
child exits, so start servers from a thread that outlives them: the main thread (a warning is
issued otherwise). :class:`DevStack` starts the two servers in parallel without helper threads:
it launches both, then waits for both.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the ``postgres``
system user (or ``nobody``), the cluster directory is chowned to it, and the directories above it
get the search bit they need (never the read bit).

Every server asks for a password, kept with its data in a file only its owner reads
(``redis/password``, ``postgres/password``; mode 0600): PostgreSQL authenticates by SCRAM only,
Redis by ``requirepass``; the URLs (``DevStack.redis_url``, ``database_url``) carry them. Every
Redis holds Kaleido's function library (:mod:`kaleido.redis_functions`) from its start.

Linux only (``/proc``, ``prctl``).

Modules: ``process`` (spawning, death signal, run-as account, ports, polling), ``server`` (the
lifecycle both servers share), ``redis`` (redis-server and cluster nodes, RESP probing),
``topology`` (parsing and judging a cluster's view of itself), ``cluster`` (RedisCluster),
``postgres`` (PostgresServer, template cache), ``pg_auth`` (its password and ``pg_hba.conf``),
``stack`` (DevStack, dev_stack), ``cli`` (``python -m kaleido.devstack``).
"""

from kaleido.devstack.cli import main
from kaleido.devstack.cluster import RedisCluster
from kaleido.devstack.postgres import PostgresServer, postgres_bindir
from kaleido.devstack.process import DevStackError, new_password, pid_alive
from kaleido.devstack.redis import RedisClusterNode, RedisServer
from kaleido.devstack.stack import SHIPPED_REDIS_CONF, DevStack, default_redis_conf, dev_stack
from kaleido.devstack.topology import ClusterNodeView, parse_cluster_nodes

__all__ = [
    "SHIPPED_REDIS_CONF",
    "ClusterNodeView",
    "DevStack",
    "DevStackError",
    "PostgresServer",
    "RedisCluster",
    "RedisClusterNode",
    "RedisServer",
    "default_redis_conf",
    "dev_stack",
    "main",
    "new_password",
    "parse_cluster_nodes",
    "pid_alive",
    "postgres_bindir",
]
