"""kaleido.gateways.redis leans on two redis-py internals: it swaps a connection pool's
`connection_class` for subclasses whose `pack_command` packs with hiredis, and it routes a
two-word command on the cluster client by the client's `command_flags`. These checks fail
first (and say what moved) when a redis-py release changes either; pyproject.toml bounds the
version to the ones checked here."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import hiredis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.connection as aioconnection

from kaleido.gateways.redis import _CONNECTION_CLASSES, RedisGateway

URLS = {
    "redis://127.0.0.1:1/0": aioconnection.Connection,
    "rediss://127.0.0.1:1/0": aioconnection.SSLConnection,
    "unix:///nonexistent/redis.sock": aioconnection.UnixDomainSocketConnection,
}


def test_the_installed_redis_py_is_within_the_checked_versions() -> None:
    installed = tuple(int(part) for part in version("redis").split(".")[:2])
    assert (6, 2) <= installed < (9, 0), f"redis-py {installed}: check the canaries, then the bound"


def test_a_pool_from_a_url_names_one_of_the_connection_classes_kaleido_replaces() -> None:
    for url, expected in URLS.items():
        pool = aioredis.Redis.from_url(url).connection_pool
        assert pool.connection_class is expected, (
            f"redis-py's pool for {url} now uses {pool.connection_class!r}: "
            "kaleido.gateways.redis._CONNECTION_CLASSES no longer covers it"
        )
        assert expected in _CONNECTION_CLASSES


def test_the_pool_makes_its_connections_from_connection_class() -> None:
    for url, replaced in URLS.items():
        client = RedisGateway.connect(None, url)._client
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        assert pool.connection_class is _CONNECTION_CLASSES[replaced]
        if replaced is aioconnection.UnixDomainSocketConnection:
            continue  # it refuses the TCP options (socket_keepalive) Kaleido's clients set
        made = pool.make_connection()  # no I/O until it connects
        assert isinstance(made, _CONNECTION_CLASSES[replaced]), (
            "redis-py's pool no longer builds connections from `connection_class`"
        )


def test_pack_command_is_the_method_kaleido_overrides_and_hiredis_packs_alike() -> None:
    base = aioconnection.Connection.pack_command
    assert list(inspect.signature(base).parameters) == ["self", "args"], (
        "redis-py's Connection.pack_command changed its signature"
    )
    plain = aioconnection.Connection()
    packed = _CONNECTION_CLASSES[aioconnection.Connection]()
    for command in [("SET", "k", "v"), ("FCALL", "f", 1, "key", b"\xff", 2.5), ("CONFIG GET", "x")]:
        assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert callable(hiredis.pack_command)


def test_the_cluster_client_knows_two_word_commands_by_their_full_name() -> None:
    client = aiocluster.RedisCluster(host="127.0.0.1", port=1)  # connects only when used
    assert "CONFIG GET" in client.command_flags, (
        "redis-py's cluster client no longer keys command_flags by the full command name: "
        "kaleido.gateways.redis.RedisGateway._routable needs another way"
    )
