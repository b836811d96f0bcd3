"""A start-up check that Kaleido's Redis user holds every right `kaleido.redis_acl` lists.

Each command Kaleido runs is tried once on throwaway probe keys under `{prefix}view:` (deleted
afterwards, and expiring anyway), and each stream and dead-letter stream is read and written
in ways that change nothing (`XLEN`, `XACK` of id 0-0), and one script runs as the others do
(`FCALL_RO` of the library's probe function, or `EVALSHA` in the `eval` mode). So a missing
right is found before the first view or entry needs it, and named: the command, or the key out
of reach. Rights a connection needs to exist at all (AUTH, HELLO, the cluster slot map) fail
earlier, at connect. No `CONFIG`: the rule grants none (`CONFIG GET requirepass` would read the
admin's password).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence

from kaleido.errors import (
    BackendError,
    ConfigError,
    RedisCommandError,
    RedisFunctionMissing,
    RedisPermissionDenied,
)
from kaleido.gateways import FUNCTIONS, RedisGateway, Script
from kaleido.keys import KeyLayout
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS, OUTBOUND_STREAMS
from kaleido.redis_functions import library_problem

# A script that touches one probe key: scripts run with the caller's rights. KEYS: the key.
_PROBE_SCRIPT = Script("acl_probe", "return redis.call('EXISTS', KEYS[1])", read_only=True)


def _probes(keys: KeyLayout, tag: str) -> tuple[list[list[str]], list[str]]:
    """The commands to try, in order, and the probe keys they create."""
    base = f"{keys.prefix}view:acl-probe:{{{tag}}}"  # one slot for all, on a cluster
    text, table, members, ranked, log = (f"{base}:{kind}" for kind in ("s", "h", "set", "z", "x"))
    expires = str(int(time.time() * 1000) + 60_000)
    commands = [
        ["PING"], ["TIME"], ["INFO", "memory"],
        ["SCAN", "0", "MATCH", f"{base}*", "COUNT", "10"],
        ["SET", text, "1", "PX", "60000"], ["GET", text], ["MGET", text], ["INCR", text],
        ["PEXPIRE", text, "60000"], ["PEXPIREAT", text, expires], ["TTL", text],
        ["TYPE", text], ["EXISTS", text], ["OBJECT", "ENCODING", text],
        ["OBJECT", "IDLETIME", text],
        ["HSET", table, "f", "1"], ["PEXPIRE", table, "60000"], ["HSETNX", table, "g", "1"],
        ["HINCRBY", table, "f", "1"], ["HGET", table, "f"], ["HGETALL", table],
        ["HLEN", table], ["HRANDFIELD", table], ["HDEL", table, "g"],
        ["SADD", members, "a", "b"], ["PEXPIRE", members, "60000"], ["SMEMBERS", members],
        ["SCARD", members], ["SREM", members, "a"], ["SPOP", members],
        ["ZADD", ranked, "1", "a"], ["PEXPIRE", ranked, "60000"], ["ZRANGE", ranked, "0", "-1"],
        ["ZSCORE", ranked, "a"], ["ZREMRANGEBYSCORE", ranked, "0", "1"],
        ["XGROUP", "CREATE", log, "g", "0", "MKSTREAM"], ["PEXPIRE", log, "60000"],
        ["XADD", log, "*", "f", "v"], ["XGROUP", "CREATECONSUMER", log, "g", "c"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", log, ">"],
        ["XPENDING", log, "g"],
        ["XAUTOCLAIM", log, "g", "c", "0", "0-0", "COUNT", "1"],
        ["XCLAIM", log, "g", "c", "0", "0-1"], ["XACK", log, "g", "0-1"],
        ["XRANGE", log, "-", "+", "COUNT", "1"], ["XREVRANGE", log, "+", "-", "COUNT", "1"],
        ["XLEN", log], ["XDEL", log, "0-1"],
        ["XTRIM", log, "MAXLEN", "1000"], ["XINFO", "STREAM", log], ["XINFO", "GROUPS", log],
        ["XINFO", "CONSUMERS", log, "g"], ["XGROUP", "DELCONSUMER", log, "g", "c"],
    ]  # fmt: skip
    for stream in (*INBOUND_STREAMS, *OUTBOUND_STREAMS):
        key = keys.stream(stream)
        commands += [["XLEN", key], ["XACK", key, CONSUMER_GROUP, "0-0"]]
    for stream in INBOUND_STREAMS:
        key = keys.dlq(stream)
        commands += [["XLEN", key], ["XACK", key, CONSUMER_GROUP, "0-0"]]
    return commands, [text, table, members, ranked, log]


async def check_functions(redis: RedisGateway) -> None:
    """In `functions` mode, raise ConfigError (one line saying what an admin runs) when a
    master lacks this version of Kaleido's function library. Backend errors propagate."""
    if redis.scripts != FUNCTIONS:
        return
    problem = await library_problem(redis)
    if problem is not None:
        raise ConfigError(
            f"KALEIDO_REDIS_SCRIPTS=functions: {problem} (docs/redis.md; "
            "KALEIDO_REDIS_SCRIPTS=eval is the weaker mode that needs none)"
        )


async def check_redis_rights(redis: RedisGateway, keys: KeyLayout) -> None:
    """Raise `RedisPermissionDenied` naming the first command or key Redis refuses.

    Other errors (a missing key or group, a wrong type) mean the right is there. Backend
    errors (Redis unreachable) propagate as they are."""
    commands, created = _probes(keys, secrets.token_hex(4))
    try:
        for command in commands:
            await _try(redis, command)
        await _try_transaction(redis, created[0])
        await _try_script(redis, created[0])
    finally:
        await _delete(redis, created)


async def _try(redis: RedisGateway, command: Sequence[str]) -> None:
    try:
        await redis.execute(*command)
    except RedisPermissionDenied as exc:
        raise _denied(command, exc) from None
    except RedisCommandError:
        pass  # refused for another reason than rights: the right is there


async def _try_script(redis: RedisGateway, key: str) -> None:
    try:
        await redis.run_script(_PROBE_SCRIPT, [key], [])
    except RedisFunctionMissing:
        raise  # not a right: the library is missing (kaleido.redis_functions says which)
    except RedisPermissionDenied as exc:
        raise _denied(_PROBE_SCRIPT.command(redis.scripts, [key], [])[:1], exc) from None


async def _try_transaction(redis: RedisGateway, key: str) -> None:
    try:
        await redis.pipeline([("GET", key), ("DEL", key)], transaction=True)
    except RedisPermissionDenied as exc:
        raise _denied(["MULTI"], exc) from None


async def _delete(redis: RedisGateway, created: Sequence[str]) -> None:
    # Without the right to DEL (reported already) or with Redis gone, the keys expire anyway.
    with contextlib.suppress(BackendError):
        await redis.execute("DEL", *created)


def _denied(command: Sequence[str], exc: RedisPermissionDenied) -> RedisPermissionDenied:
    shown = " ".join(command[:3])
    return RedisPermissionDenied(f"Redis refused `{shown}`: {exc}")
