"""The Redis gateway: redis-py's asyncio client behind a small trio-facing API.

Callers pass raw commands (`"SET", key, value, ...`) and get redis-py's replies (bytes, ints,
lists). Round trips through trio-asyncio cost several times a native call, so the API favours
batching: `pipeline()` sends many commands in one round trip and `run_script()` runs one of
Kaleido's Lua scripts.

How scripts run (`KALEIDO_REDIS_SCRIPTS`): as functions of the library an admin loaded
(`FCALL`; Kaleido's user may not load code, so a missing function is `RedisFunctionMissing`,
never reloaded), or in the weaker `eval` mode by SHA (`EVALSHA`), loading a script once when
Redis forgot it (restart, flush, SCRIPT FLUSH).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.connection as aioconnection
import redis.exceptions as rexc
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from kaleido.breaker import CircuitBreaker
from kaleido.errors import RedisCommandError, RedisFunctionMissing
from kaleido.gateways._bridge import AsyncioBridge, map_redis_error
from kaleido.gateways.redis_scripts import EVAL, FUNCTIONS, SCRIPT_MODES, Script
from kaleido.redis_url import ClusterURL, is_cluster_url, parse_cluster_url

Command = Sequence[Any]

# Below redis.conf's `timeout 300`: the client pings a connection idle this long before using
# it, so a connection the server closed is replaced instead of failing a caller.
HEALTH_CHECK_INTERVAL = 60
# A socket read may wait for an XREADGROUP BLOCK; blocking reads are kept well below this.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
# Retry a command on a dropped connection a few times before calling Redis unavailable.
RETRIES = 2
# Closing a client must not hang shutdown.
CLOSE_TIMEOUT = 2.0


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python loop: a view batch's script
    calls carry hundreds of arguments, and packing them was a third of the ingester's time."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET": redis-py splits it
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        return [hiredis.pack_command(args)]


class _Connection(_HiredisPacking, aioconnection.Connection):
    pass


class _SSLConnection(_HiredisPacking, aioconnection.SSLConnection):
    pass


class _UnixConnection(_HiredisPacking, aioconnection.UnixDomainSocketConnection):
    pass


_CONNECTION_CLASSES: dict[type[aioconnection.AbstractConnection], type[Any]] = {
    aioconnection.Connection: _Connection,
    aioconnection.SSLConnection: _SSLConnection,
    aioconnection.UnixDomainSocketConnection: _UnixConnection,
}


class RedisGateway:
    """Trio-facing Redis client. Every error is one of `kaleido.errors`."""

    def __init__(
        self,
        client: aioredis.Redis | aiocluster.RedisCluster,
        bridge: AsyncioBridge,
        url: str,
        scripts: str = FUNCTIONS,
    ) -> None:
        if scripts not in SCRIPT_MODES:
            raise ValueError(f"scripts: expected one of {', '.join(SCRIPT_MODES)}, got {scripts!r}")
        self._client = client
        self._bridge = bridge
        self.url = url
        self.scripts = scripts
        self.round_trips = 0
        self.breaker = bridge.breaker
        # Redis Cluster: a script call's keys must share one slot (see kaleido.views.store).
        self.is_cluster = isinstance(client, aiocluster.RedisCluster)

    @classmethod
    def connect(
        cls,
        loop: Any,
        url: str,
        breaker: CircuitBreaker | None = None,
        *,
        scripts: str = FUNCTIONS,
    ) -> RedisGateway:
        """Create the client (redis-py's cluster client for a `redis+cluster://` URL); no
        connection is made until the first command. `scripts`: how scripts run (`FUNCTIONS`
        or `EVAL`)."""
        bridge = AsyncioBridge(loop, map_redis_error, breaker)
        if is_cluster_url(url):
            return cls(_cluster_client(parse_cluster_url(url)), bridge, url, scripts)
        client = aioredis.Redis.from_url(
            url, retry_on_error=[rexc.ConnectionError, rexc.TimeoutError], **_client_options()
        )
        pool = client.connection_pool
        pool.connection_class = _CONNECTION_CLASSES.get(
            pool.connection_class, pool.connection_class
        )
        return cls(client, bridge, url, scripts)

    async def execute(self, *command: Any) -> Any:
        """Run one command and return its reply."""
        self.round_trips += 1
        return await self._bridge.run(self._client.execute_command(*self._routable(command)))

    def _routable(self, command: Sequence[Any]) -> Sequence[Any]:
        """The cluster client routes a keyless command by its full name ("CONFIG GET"), and
        finds none when it comes as two arguments: join them."""
        if isinstance(self._client, aiocluster.RedisCluster) and len(command) > 1:
            name = f"{command[0]} {command[1]}".upper()
            if name in self._client.command_flags:
                return (name, *command[2:])
        return command

    async def pipeline(
        self, commands: Sequence[Command], *, transaction: bool = False
    ) -> list[Any]:
        """Run commands in one round trip (MULTI/EXEC when `transaction`), replies in order.

        A command that fails raises its mapped error; the others have still run.
        """
        if not commands:
            return []
        return await self._pipeline_replies(commands, transaction=transaction, raise_on_error=True)

    async def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run the script once. In `eval` mode, on NOSCRIPT load it and run it once more; in
        `functions` mode a function Redis lacks is `RedisFunctionMissing`."""
        command = script.command(self.scripts, keys, args)
        try:
            return await self.execute(*command)
        except rexc.NoScriptError:
            await self.on_masters("SCRIPT", "LOAD", script.source)
            return await self.execute(*command)
        except RedisFunctionMissing as exc:
            raise _missing(script, exc) from None

    async def run_scripts(
        self, script: Script, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Run the script once per (keys, args) call, pipelined; replies in order.

        In `eval` mode, the calls a node answered NOSCRIPT (a restarted node, or a replica
        promoted since the script was loaded) did not run: the script is loaded and those calls
        alone sent again. Any other failure raises its mapped error.
        """
        commands = [script.command(self.scripts, keys, args) for keys, args in calls]
        if not commands:
            return []
        replies = await self._pipeline_replies(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, rexc.NoScriptError)]
        if missing and self.scripts == EVAL:
            await self.on_masters("SCRIPT", "LOAD", script.source)
            again = await self._pipeline_replies([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                mapped = map_redis_error(reply)
                if isinstance(mapped, RedisFunctionMissing):
                    raise _missing(script, mapped) from reply
                raise mapped from reply
        return replies

    async def _pipeline_replies(
        self,
        commands: Sequence[Command],
        *,
        transaction: bool = False,
        raise_on_error: bool = False,
    ) -> list[Any]:
        """Replies in order; with `raise_on_error` False, a failed command's error in its
        place."""
        self.round_trips += 1

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=raise_on_error))

        return await self._bridge.run(run())

    async def on_masters(self, *command: Any) -> list[Any]:
        """Run a command on every master (the one server of a single Redis): INFO, KEYS,
        SCRIPT LOAD and the like, which answer for their own node. Replies in node order."""
        return list((await self.on_each_master(*command)).values())

    async def on_each_master(self, *command: Any) -> dict[str, Any]:
        """As `on_masters`, by node ("host:port"; "" for a single Redis)."""
        if not isinstance(self._client, aiocluster.RedisCluster):
            return {"": await self.execute(*command)}
        self.round_trips += 1
        client = self._client

        async def run() -> dict[str, Any]:
            await client.initialize()  # the node list, before any other command was sent
            # One call per node: redis-py would merge their replies by each command's policy.
            nodes = client.get_primaries()
            calls = [client.execute_command(*command, target_nodes=node) for node in nodes]
            replies = await asyncio.gather(*calls)
            return {node.name: reply for node, reply in zip(nodes, replies, strict=True)}

        return await self._bridge.run(run())

    async def on_every_node(self, *command: Any, return_errors: bool = False) -> dict[str, Any]:
        """Run a command on every node, masters and replicas, by node ("" for a single Redis):
        what Redis keeps per node and never replicates, such as ACL users. A cluster's nodes
        are those CLUSTER NODES lists (the client's slot map may not list a replica yet), each
        reached with a connection of its own; a node flagged as failed is not tried. With
        `return_errors`, a node's error reply is its reply (a `kaleido.errors` exception)."""
        if not isinstance(self._client, aiocluster.RedisCluster):
            try:
                return {"": await self.execute(*command)}
            except RedisCommandError as exc:
                if return_errors:
                    return {"": exc}
                raise
        self.round_trips += 1
        client, url = self._client, parse_cluster_url(self.url)

        async def one(node: str) -> Any:
            host, _, port = node.rpartition(":")
            single = aioredis.Redis(
                host=host.strip("[]"),
                port=int(port),
                username=url.username,
                password=url.password,
                ssl=url.tls,
                ssl_ca_certs=url.ca_certs,
                **_client_options(),
            )
            try:
                return await single.execute_command(*command)
            except rexc.ResponseError as exc:
                if return_errors:
                    return map_redis_error(exc)
                raise
            finally:
                await single.aclose()

        async def run() -> dict[str, Any]:
            await client.initialize()
            primary = client.get_primaries()[0]
            listing = await client.execute_command("CLUSTER NODES", target_nodes=primary)
            nodes = _live_nodes(listing)
            replies = await asyncio.gather(*(one(node) for node in nodes))
            return dict(zip(nodes, replies, strict=True))

        return await self._bridge.run(run())

    async def master_names(self) -> list[str]:
        """Every master's "host:port" ([""] for a single Redis)."""
        return list(await self.on_each_master("PING"))

    async def on_master(self, node: str, *command: Any) -> Any:
        """Run a command on one master named by `master_names` (SCAN with its own cursor)."""
        if not isinstance(self._client, aiocluster.RedisCluster):
            return await self.execute(*command)
        self.round_trips += 1
        client = self._client

        async def run() -> Any:
            target = client.get_node(node_name=node)
            if target is None:
                raise rexc.ConnectionError(f"no cluster node {node} any more")
            reply = await client.execute_command(*command, target_nodes=target)
            if str(command[0]).upper() == "SCAN":  # redis-py answers ({node: cursor}, keys)
                cursors, keys = reply
                return cursors[target.name], keys
            return reply

        return await self._bridge.run(run())

    async def ping(self) -> bool:
        return bool(await self.execute("PING"))

    async def aclose(self) -> None:
        """Close every connection, shielded and bounded so shutdown cannot hang here."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            # Closing a broken client must not fail shutdown.
            with contextlib.suppress(Exception):
                await self._bridge.run(self._client.aclose(), guarded=False)


def _live_nodes(listing: Any) -> list[str]:
    """The "host:port" of every node of a CLUSTER NODES reply (raw, or as redis-py parses it)
    not flagged as failed, unreachable or still joining."""
    if isinstance(listing, dict):
        rows = [(str(name), str(info.get("flags", ""))) for name, info in listing.items()]
    else:
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        rows = [
            (fields[1].split("@")[0], fields[2])
            for fields in (line.split() for line in text.splitlines())
            if len(fields) > 2
        ]
    skip = {"fail", "noaddr", "handshake"}
    return sorted(name for name, flags in rows if not skip & set(flags.split(",")))


@asynccontextmanager
async def open_redis(url: str, *, scripts: str = FUNCTIONS) -> AsyncIterator[RedisGateway]:
    """A Redis gateway alone, on a trio-asyncio loop of its own (the admin step, which needs
    no PostgreSQL); closed, shielded, on the way out."""
    async with trio_asyncio.open_loop() as loop:
        redis = RedisGateway.connect(loop, url, scripts=scripts)
        try:
            yield redis
        finally:
            await redis.aclose()


def _missing(script: Script, exc: RedisFunctionMissing) -> RedisFunctionMissing:
    return RedisFunctionMissing(
        f"Redis has no function {script.function} ({script.name}): Kaleido's function "
        "library is missing or another version (an admin loads it with `kaleido redis-acl "
        f"--setuser`, see docs/redis.md; Redis said: {exc})"
    )


def _cluster_client(url: ClusterURL) -> aiocluster.RedisCluster:
    """redis-py's cluster client: it follows MOVED and ASK, and refreshes the slot map after a
    failover; commands are retried on a dropped connection like the single client's."""
    return aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in url.nodes],
        username=url.username,
        password=url.password,
        ssl=url.tls,
        ssl_ca_certs=url.ca_certs,
        **_client_options(),
    )


def _client_options() -> dict[str, Any]:
    """What the single and the cluster client share: timeouts, keep-alive, health checks, and
    a few retries on a dropped connection (a fresh Retry each: it keeps no shared state)."""
    return {
        "decode_responses": False,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), RETRIES),
        "client_name": "kaleido",
    }
