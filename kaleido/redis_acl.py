"""The least-privilege Redis ACL rule Kaleido needs, built from its key layout.

Kaleido runs well as a Redis user that may run only the commands below on only its own keys:
the view keys under `{prefix}view:` (and the seed's v1 keys, read once on takeover), the ten
streams, the inbound ones' dead-letter streams and the outbound ones' outbox marks. Lua
scripts run with the caller's rights, so the commands the scripts call are listed too.

No `CONFIG` at all (`CONFIG GET requirepass` would hand out the admin's password): what the
doctor and the metrics reporter read about the server comes from `INFO`. Scripts: in the
`functions` mode only `FCALL` and `FCALL_RO` of the library an admin loaded, no way to load or
run any other Lua (`EVAL`, `EVALSHA`, `SCRIPT LOAD`, `FUNCTION LOAD`); the weaker `eval` mode
needs `EVALSHA` and `SCRIPT LOAD`, with which the user may run any Lua.

`kaleido redis-acl` prints the rule for a deployment (and, given an admin URL, installs it with
the library: `kaleido.redis_admin`); `tests/test_redis_acl.py` runs the view and stream paths
as a user with exactly this rule and checks that Redis denied nothing.
"""

from __future__ import annotations

import hashlib

from kaleido.gateways import EVAL, FUNCTIONS
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS, OUTBOUND_STREAMS

# Grouped by what needs them; `a|b` is subcommand b of a.
COMMANDS: tuple[str, ...] = (
    # connections, health, the metrics reporter and `kaleido doctor`
    "ping", "client|setname", "select", "info", "time",
    "scan", "type", "ttl", "object|encoding", "object|idletime", "exists",
    # Redis Cluster clients learn the slot map and the commands' key positions
    "cluster|slots", "command",
    # pipelines sent as transactions
    "multi", "exec", "discard",
    # view counting: the commands its scripts call (how scripts run: _SCRIPT_COMMANDS)
    "get", "set", "del", "mget", "incr", "pexpire", "pexpireat",
    "hget", "hgetall", "hset", "hsetnx", "hdel", "hlen", "hincrby", "hrandfield",
    "sadd", "srem", "smembers", "sismember", "spop", "scard", "zadd", "zcard", "zrange", "zscore",
    "zrem", "zremrangebyscore", "zremrangebyrank",
    # streams: publishing, consuming, dead-lettering, housekeeping, the ops views
    "xadd", "xack", "xdel", "xlen", "xrange", "xrevrange", "xtrim", "xreadgroup", "xautoclaim",
    "xclaim", "xpending", "xgroup|create", "xgroup|createconsumer", "xgroup|delconsumer",
    "xinfo|stream", "xinfo|groups", "xinfo|consumers",
)  # fmt: skip

# How scripts run, by KALEIDO_REDIS_SCRIPTS: functions of the library an admin loaded, or (the
# weaker mode) EVALSHA, loading a script Redis forgot.
SCRIPT_COMMANDS: dict[str, tuple[str, ...]] = {
    FUNCTIONS: ("fcall", "fcall_ro"),
    EVAL: ("evalsha", "script|load"),
}

# redis-py names itself with CLIENT SETINFO (Redis 7.2 and later) and ignores a refusal, which
# Redis would still write to its ACL log on every connection.
_SINCE_7_2 = ("client|setinfo",)

# The seed's (v1) keys that a takeover reads and deletes, besides those under `view:`.
_LEGACY_PATTERNS = ("user:view:*", "post:views:*", "pending:views")


def key_patterns(keys: KeyLayout) -> list[str]:
    """Every key pattern Kaleido reads or writes under `keys.prefix`."""
    prefix = keys.prefix
    patterns = [f"{prefix}view:*", f"{prefix}ops:*", *(f"{prefix}{p}" for p in _LEGACY_PATTERNS)]
    for stream in (*INBOUND_STREAMS, *OUTBOUND_STREAMS):
        # Only inbound streams dead-letter; the stream snapshot reads every stream's DLQ size.
        patterns += [_escape(keys.stream(stream)), _escape(keys.dlq(stream))]
    # The outbox relay marks what it published beside each outbound stream.
    patterns += [_escape(keys.outbox_marks(stream)) for stream in OUTBOUND_STREAMS]
    return patterns


def commands_for(redis_version: tuple[int, int], scripts: str = FUNCTIONS) -> tuple[str, ...]:
    """The commands to allow on a Redis of that version (ACL rules reject unknown commands),
    scripts running as `scripts` says (`functions` or `eval`)."""
    since = _SINCE_7_2 if redis_version >= (7, 2) else ()
    return COMMANDS + SCRIPT_COMMANDS[scripts] + since


def acl_rule(
    user: str,
    password: str,
    keys: KeyLayout,
    redis_version: tuple[int, int] = (7, 0),
    scripts: str = FUNCTIONS,
) -> str:
    """One line of a Redis ACL file (`aclfile`) for `user`; the password is stored hashed.

    Starts from nothing (`reset`), so applying it to an existing user drops any other right."""
    check_user(user)
    if not password:
        raise ValueError("password: expected a non-empty password")
    rules = acl_setuser_args(keys, password_hash(password), redis_version, scripts)
    return " ".join(["user", user, *rules])


def check_user(user: str) -> None:
    """ValueError unless `user` can be written in an ACL rule."""
    if not user or any(c.isspace() for c in user):
        raise ValueError(f"user {user!r}: expected a name without spaces")


def password_hash(password: str) -> str:
    """The rule that sets a password by its SHA-256 (`#…`): the rule never holds the password."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_setuser_args(
    keys: KeyLayout,
    password_rule: str,
    redis_version: tuple[int, int] = (7, 0),
    scripts: str = FUNCTIONS,
) -> list[str]:
    """The rules after `ACL SETUSER <user>`: `password_rule` is `>password` or `#sha256`."""
    return [
        "reset",
        "on",
        password_rule,
        *(f"~{pattern}" for pattern in key_patterns(keys)),
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in commands_for(redis_version, scripts)),
    ]


def _escape(key: str) -> str:
    """An exact key as an ACL glob pattern (Redis globs treat `*?[]\\` as special)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in key)
