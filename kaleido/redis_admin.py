"""The admin step that prepares a Redis for Kaleido (`kaleido redis-acl --setuser` with
`KALEIDO_REDIS_ADMIN_URL`): Kaleido's user on every node, its function library on every master;
and the rule `kaleido redis-acl` prints without an admin URL.

Run as a Redis user that may do both (the `default` user, or one with `+acl|setuser
+function|load +acl|save +info`). ACL users are kept per node and never replicated, so the
user goes to every node, replicas included (a replica promoted by a failover must know it); a
function library is replicated, so it is loaded on each master (`FUNCTION LOAD REPLACE`, so an
upgrade replaces an older version). `ACL SAVE` then writes the users to the ACL file of each
node that has one; a node without one keeps them until it restarts (put the line `kaleido
redis-acl` prints in its configuration). Functions are kept in RDB and AOF files: a Redis
without persistence loses them when it restarts, and the step must run again.
"""

from __future__ import annotations

import attrs

from kaleido.errors import ConfigError, RedisCommandError
from kaleido.gateways import FUNCTIONS, RedisGateway, open_redis
from kaleido.keys import KeyLayout
from kaleido.redis_acl import acl_rule, acl_setuser_args, check_user, password_hash
from kaleido.redis_functions import LIBRARY, library, library_problem, version
from kaleido.redis_url import is_cluster_url, redis_credentials
from kaleido.settings import Settings


@attrs.frozen
class Installed:
    """What the admin step did."""

    user: str
    nodes: tuple[str, ...]  # where the user was set ("" for a single Redis)
    masters: tuple[str, ...]  # where the library was loaded; empty in the `eval` mode
    library_version: str | None
    unsaved: tuple[str, ...]  # nodes without an ACL file: the user is lost at their restart

    def lines(self) -> list[str]:
        """A report for people, one line each."""
        where = ", ".join(node or "the Redis" for node in self.nodes)
        out = [f"user {self.user}: set on {where}"]
        if self.masters:
            masters = ", ".join(node or "the Redis" for node in self.masters)
            out.append(f"function library {LIBRARY} {self.library_version}: loaded on {masters}")
        if self.unsaved:
            nodes = ", ".join(node or "the Redis" for node in self.unsaved)
            out.append(
                f"not saved on {nodes} (no aclfile): add the line `kaleido redis-acl` prints to "
                "its configuration, or run this again after a restart"
            )
        return out


async def redis_version(redis: RedisGateway) -> tuple[int, int]:
    """The oldest (major, minor) among the masters."""
    found = []
    for info in await redis.on_masters("INFO", "server"):
        major, minor, *_ = str(info.get("redis_version", "7.0")).split(".")
        found.append((int(major), int(minor)))
    return min(found)


async def install(
    admin: RedisGateway, user: str, password: str, keys: KeyLayout, scripts: str = FUNCTIONS
) -> Installed:
    """Set Kaleido's user (the rule of `kaleido.redis_acl`, for the oldest Redis version among
    the masters) on every node and, in the `functions` mode, load the library on every master;
    then check that every master holds it. Raises the gateway's errors."""
    check_user(user)
    if not password:
        raise ValueError("password: expected a non-empty password")
    rules = acl_setuser_args(keys, password_hash(password), await redis_version(admin), scripts)
    nodes = await admin.on_every_node("ACL", "SETUSER", user, *rules)
    masters: list[str] = []
    if scripts == FUNCTIONS:
        masters = list(await admin.on_each_master("FUNCTION", "LOAD", "REPLACE", library()))
        problem = await library_problem(admin)
        if problem is not None:
            raise RedisCommandError(f"the library did not load: {problem}")
    # A node without an ACL file keeps its users from redis.conf: not saved, and said so.
    saved = await admin.on_every_node("ACL", "SAVE", return_errors=True)
    for reply in saved.values():
        if isinstance(reply, Exception) and "ACL file" not in str(reply):
            raise reply
    unsaved = [node for node, reply in saved.items() if isinstance(reply, Exception)]
    return Installed(
        user,
        tuple(nodes),
        tuple(masters),
        version() if masters else None,
        tuple(unsaved),
    )


async def install_for(settings: Settings, admin_url: str) -> Installed:
    """The admin step for the user and password in KALEIDO_REDIS_URL, the key prefix and the
    script mode of `settings`, on a connection of its own as the admin."""
    user, password = kaleido_redis_user(settings)
    keys = KeyLayout(settings.key_prefix, cluster=is_cluster_url(settings.redis_url or ""))
    async with open_redis(admin_url) as admin:
        return await install(admin, user, password, keys, settings.redis_scripts)


def kaleido_redis_user(settings: Settings) -> tuple[str, str]:
    """The user and password KALEIDO_REDIS_URL names (not `default`); ConfigError otherwise."""
    url = settings.redis_url
    if url is None:
        raise ConfigError("kaleido redis-acl: set KALEIDO_REDIS_URL (redis://USER:PASSWORD@host/)")
    user, password = redis_credentials(url)
    if user == "default" or not password:
        raise ConfigError(
            "kaleido redis-acl: KALEIDO_REDIS_URL must name Kaleido's own user and its password "
            "(redis://USER:PASSWORD@host/); the default user keeps its own rights"
        )
    return user, password


def redis_acl_rule(settings: Settings, version: str, *, setuser: bool = False) -> str:
    """The ACL rule for the Redis user and password in KALEIDO_REDIS_URL, for its key prefix
    and script mode: an aclfile line, or an `ACL SETUSER` command."""
    user, password = kaleido_redis_user(settings)
    keys = KeyLayout(settings.key_prefix, cluster=is_cluster_url(settings.redis_url or ""))
    major, minor = (int(part) for part in version.split("."))
    rule = acl_rule(user, password, keys, (major, minor), settings.redis_scripts)
    return "ACL SETUSER " + rule.removeprefix("user ") if setuser else rule
