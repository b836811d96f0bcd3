"""Attacks as Kaleido's own Redis user, on one Redis and on every node of a cluster: reading the
admin's password through CONFIG (refused: the rule grants no CONFIG), and loading or running Lua
of one's own, which could stall or block Redis for everyone (refused: only FCALL of the library
an admin loaded)."""

from __future__ import annotations

import pytest

from kaleido.devstack import DevStack
from kaleido.errors import RedisPermissionDenied
from kaleido.gateways import open_backends, open_redis
from kaleido.redis_admin import install
from kaleido.redis_functions import LIBRARY
from kaleido.settings import Settings

from .redis_helpers import PASSWORD, USER, as_user

ENDLESS = "while true do end"
# What the user must not run: each would read a secret, load or run Lua of its own, or change
# or delete what the admin loaded.
REFUSED: list[tuple[str, ...]] = [
    ("CONFIG", "GET", "*"),
    ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "GET", "masterauth"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("EVAL", ENDLESS, "0"),
    ("EVAL_RO", "return 1", "0"),
    ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
    ("SCRIPT", "LOAD", ENDLESS),
    ("SCRIPT", "FLUSH"),
    ("FUNCTION", "LOAD", "REPLACE", f"#!lua name=x\nredis.register_function('x', {ENDLESS})"),
    ("FUNCTION", "DELETE", LIBRARY),
    ("FUNCTION", "FLUSH"),
    ("FUNCTION", "DUMP"),
    ("ACL", "GETUSER", "default"),
    ("ACL", "LIST"),
    ("FLUSHALL",),
    ("KEYS", "*"),
]


@pytest.fixture
async def user_url(kaleido_settings: Settings) -> str:
    """Kaleido's user, made by the admin step on the test stack's Redis; its URL."""
    async with open_backends(kaleido_settings) as backends:
        await install(backends.redis, USER, PASSWORD, backends.keys)
    return str(as_user(kaleido_settings).redis_url)


async def refusals(url: str) -> list[str]:
    """The commands of REFUSED that Redis ran for the user (none, if the rule holds)."""
    ran = []
    async with open_redis(url) as user:
        for command in REFUSED:
            try:
                await user.execute(*command)
            except RedisPermissionDenied:
                continue
            ran.append(" ".join(command[:3]))
    return ran


async def test_the_user_reads_no_secret_and_runs_no_lua_of_its_own(
    user_url: str, kaleido_settings: Settings
) -> None:
    assert await refusals(user_url) == []
    async with open_redis(user_url) as user:
        # What it may read about the server holds no password.
        admin_password = str(kaleido_settings.redis_url).split("@")[0].rpartition(":")[2]
        assert admin_password not in str(await user.execute("INFO", "everything"))
        # The library is still there, and Kaleido's own functions run.
        assert await user.execute("FCALL_RO", "kaleido_version", 0)


@pytest.mark.slow
async def test_the_same_holds_on_every_node_of_a_cluster(cluster_stack: DevStack) -> None:
    admin_settings = Settings(
        redis_url=cluster_stack.redis_url,
        database_url=cluster_stack.database_url,
        key_prefix="redteam:",
    )
    async with open_backends(admin_settings) as backends:
        installed = await install(backends.redis, USER, PASSWORD, backends.keys)
        assert len(installed.nodes) == 6 and len(installed.masters) == 3
        for node in installed.nodes:  # replicas too: each one keeps its own users
            assert await refusals(f"redis://{USER}:{PASSWORD}@{node}/0") == [], node
        versions = await backends.redis.on_masters("FCALL_RO", "kaleido_version", 0)
    assert len(set(versions)) == 1  # the library is still on every master
