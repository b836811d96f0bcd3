"""Kaleido as a least-privilege Redis user: the rule `kaleido.redis_acl` builds lets the whole
view and stream path run (Redis's ACL log stays empty), on one Redis and a cluster, with scripts
as functions of the library the admin step loads or (the weaker mode) by EVALSHA; a user that
lacks a right, or a Redis that lacks the library, is a clear start-up error, not a crash loop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from kaleido import SyncFailed, open_kaleido
from kaleido.app import service_of
from kaleido.devstack import DevStack
from kaleido.errors import ConfigError, RedisPermissionDenied
from kaleido.gateways import EVAL, RedisGateway, open_backends
from kaleido.keys import KeyLayout
from kaleido.ops.doctor import Level, diagnose
from kaleido.redis_acl import COMMANDS, acl_rule, key_patterns
from kaleido.redis_admin import install
from kaleido.redis_functions import LIBRARY, library, version
from kaleido.redis_preflight import check_redis_rights
from kaleido.settings import Settings

from .conftest import REPO
from .processes import kaleido_env
from .redteam.redis_helpers import PASSWORD, USER, as_user, denials, exercise, set_user
from .waiting import wait_until


@pytest.fixture
async def admin(kaleido_settings: Settings) -> AsyncIterator[RedisGateway]:
    """The Redis default user, which creates the restricted one and reads the ACL log."""
    async with open_backends(kaleido_settings) as backends:
        yield backends.redis


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


async def test_the_whole_path_runs_with_exactly_the_rules(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings)
    await exercise(as_user(kaleido_settings), post_id=5, media_id=11)
    assert await denials(admin) == []


async def test_the_whole_path_runs_in_the_eval_mode(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings, scripts=EVAL)
    await admin.execute("SCRIPT", "FLUSH")  # the user loads what it runs
    settings = attrs.evolve(as_user(kaleido_settings), redis_scripts=EVAL)
    await exercise(settings, post_id=6, media_id=12)
    assert await denials(admin) == []


@pytest.mark.slow
async def test_the_rules_hold_on_a_cluster(cluster_stack: DevStack) -> None:
    base = Settings(
        redis_url=cluster_stack.redis_url,
        database_url=cluster_stack.database_url,
        key_prefix="acl:",
        sync_interval=3600.0,
        shutdown_deadline=5.0,
        log_format="console",
    )
    async with open_backends(base) as backends:
        cluster = backends.redis  # the admin step: the user on every node, the library on masters
        installed = await install(cluster, USER, PASSWORD, backends.keys)
        assert len(installed.nodes) == 6 and len(installed.masters) == 3
        assert installed.library_version == version()
        await cluster.on_every_node("ACL", "LOG", "RESET")
        await exercise(as_user(base), post_id=90005, media_id=90011)
        logs = await cluster.on_every_node("ACL", "LOG")
    assert all(not entries for entries in logs.values()), logs


async def test_a_missing_right_is_a_clear_start_up_error(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings, without="xadd")
    settings = as_user(kaleido_settings)
    with pytest.RaisesGroup(ConfigError, flatten_subgroups=True) as caught:
        async with open_kaleido(settings):
            pytest.fail("Kaleido started without the right to XADD")
    (error,) = leaves(caught.value)
    message = str(error)
    assert "xadd" in message and USER in message and "kaleido redis-acl" in message


async def test_a_key_outside_the_patterns_is_a_clear_start_up_error(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    # The rule made for another prefix: every key of this deployment is out of reach.
    await set_user(admin, attrs.evolve(kaleido_settings, key_prefix="other:"))
    async with open_backends(as_user(kaleido_settings)) as backends:
        with pytest.raises(RedisPermissionDenied) as caught:
            await check_redis_rights(backends.redis, backends.keys)
    assert "key" in str(caught.value) and kaleido_settings.key_prefix in str(caught.value)


async def test_the_doctor_names_the_missing_right(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings, without="xinfo|groups")
    async with open_backends(as_user(kaleido_settings)) as backends:
        findings = await diagnose(backends, dlq_interval=0)
    problems = [f for f in findings if f.level is Level.PROBLEM]
    assert any("xinfo|groups" in f.message for f in problems), problems


def test_the_rule_lists_each_key_pattern_and_command_once() -> None:
    keys = KeyLayout("app:")
    line = acl_rule("kaleido", "secret", keys)
    assert line.startswith("user kaleido reset on #")
    assert "secret" not in line
    patterns = key_patterns(keys)
    assert len(patterns) == len(set(patterns)) and all(p.startswith("app:") for p in patterns)
    assert len(COMMANDS) == len(set(COMMANDS))
    assert "+flushall" not in line and "+keys" not in line and "+config" not in line
    cluster = key_patterns(KeyLayout("app:", cluster=True))
    assert "{app:ml-insights-results}:dlq" in cluster


def test_functions_are_the_only_scripts_of_the_default_rule() -> None:
    functions = acl_rule("kaleido", "secret", KeyLayout()).split()
    assert "+fcall" in functions and "+fcall_ro" in functions
    assert not [r for r in functions if r.startswith(("+eval", "+script", "+function"))]
    weaker = acl_rule("kaleido", "secret", KeyLayout(), scripts=EVAL).split()
    assert "+evalsha" in weaker and "+script|load" in weaker and "+fcall" not in weaker
    assert not [r for r in weaker if r.startswith(("+eval ", "+config"))]


async def test_a_right_revoked_while_running_loses_no_view(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings)
    async with open_kaleido(as_user(kaleido_settings)) as k:
        await admin.execute("ACL", "SETUSER", USER, "-fcall")  # view scripts refused
        result = await k.views.record([(1, 9), (2, 9)])
        assert result.counted == 2  # journaled in PostgreSQL, not lost
        assert service_of(k).supervisor.actors["view-ingester"].finished is False
        await admin.execute("ACL", "SETUSER", USER, "+fcall")
        await k.sync_now()  # replays the journal into the counts
        assert await k.views.total(9) == 2


async def test_the_command_line_prints_a_rule_redis_accepts(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    restricted = as_user(kaleido_settings)
    env = {"KALEIDO_REDIS_URL": str(restricted.redis_url)}
    env["KALEIDO_KEY_PREFIX"] = kaleido_settings.key_prefix
    printed = (await run_kaleido(env, "redis-acl", "--setuser")).stdout.decode().split()
    assert printed[:3] == ["ACL", "SETUSER", USER] and PASSWORD not in printed
    await admin.execute(*printed)
    async with open_backends(restricted) as backends:
        await check_redis_rights(backends.redis, backends.keys)
    env["KALEIDO_REDIS_URL"] = "redis://127.0.0.1:6379/0"  # no user of its own
    refused = await run_kaleido(env, "redis-acl")
    assert refused.returncode == 2 and b"must name Kaleido's own user" in refused.stderr
    printed_library = (await run_kaleido({}, "redis-acl", "--library")).stdout.decode()
    assert printed_library == library() and printed_library.startswith(f"#!lua name={LIBRARY}")


@pytest.fixture
async def without_library(admin: RedisGateway) -> AsyncIterator[RedisGateway]:
    """The test stack's Redis without Kaleido's function library, given back afterwards."""
    await admin.execute("FUNCTION", "DELETE", LIBRARY)
    try:
        yield admin
    finally:
        await admin.execute("FUNCTION", "LOAD", "REPLACE", library())


async def start_up_error(settings: Settings) -> str:
    with pytest.RaisesGroup(ConfigError, flatten_subgroups=True) as caught:
        async with open_kaleido(settings):
            pytest.fail("Kaleido started")
    (error,) = leaves(caught.value)
    return str(error)


async def test_the_admin_step_installs_the_user_and_the_library(
    without_library: RedisGateway, kaleido_settings: Settings, tmp_path: Path
) -> None:
    restricted = as_user(kaleido_settings)
    await without_library.execute("ACL", "DELUSER", USER)
    # Start-up without the library: one line saying what to run.
    await set_user(without_library, kaleido_settings)
    message = await start_up_error(restricted)
    assert "\n" not in message and "has no function library 'kaleido'" in message
    assert "kaleido redis-acl --setuser" in message and "KALEIDO_REDIS_ADMIN_URL" in message
    await without_library.execute("ACL", "DELUSER", USER)
    # The step, as an admin would run it: the admin URL in a file, never in the arguments.
    admin_url = tmp_path / "admin-url"
    admin_url.write_text(str(kaleido_settings.redis_url) + "\n")
    env = {
        "KALEIDO_REDIS_URL": str(restricted.redis_url),
        "KALEIDO_KEY_PREFIX": kaleido_settings.key_prefix,
        "KALEIDO_REDIS_ADMIN_URL_FILE": str(admin_url),
    }
    done = await run_kaleido(env, "redis-acl", "--setuser")
    report = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert f"user {USER}: set on the Redis" in report
    assert f"function library kaleido {version()}: loaded on the Redis" in report
    assert "no aclfile" in report  # the test Redis keeps users in memory only: said so
    assert PASSWORD not in report and "default:" not in report
    async with open_kaleido(restricted) as k:  # starts: the user and the library are there
        assert (await k.views.record([(1, 3)])).counted == 1


async def test_an_outdated_library_stops_start_up(
    without_library: RedisGateway, kaleido_settings: Settings
) -> None:
    older = library().replace(version(), "0123456789abcdef")
    await without_library.execute("FUNCTION", "LOAD", "REPLACE", older)
    await set_user(without_library, kaleido_settings)
    message = await start_up_error(as_user(kaleido_settings))
    assert "holds version 0123456789abcdef of the function library 'kaleido'" in message
    assert f"needs version {version()}" in message and "kaleido redis-acl --setuser" in message


async def test_a_library_lost_while_running_loses_no_view(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    # A Redis restarted without persistence loses its functions: the user cannot load them.
    await set_user(admin, kaleido_settings)
    # A sync that ran meanwhile could not release its lock (a function too): it expires.
    settings = attrs.evolve(as_user(kaleido_settings), sync_lock_ttl=1.0)
    async with open_kaleido(settings) as k:
        await admin.execute("FUNCTION", "DELETE", LIBRARY)
        try:
            result = await k.views.record([(1, 8), (2, 8)])
            assert result.counted == 2  # journaled in PostgreSQL, not lost
            findings = await diagnose(service_of(k).backends, dlq_interval=0)
            (scripts,) = [f for f in findings if f.check == "scripts"]
            assert scripts.level is Level.PROBLEM and "no function library" in scripts.message
        finally:
            await admin.execute("FUNCTION", "LOAD", "REPLACE", library())

        async def synced() -> bool:  # replays the journal into the counts
            try:
                await k.sync_now()
            except SyncFailed:
                return False
            return True

        await wait_until(synced, timeout=10, interval=0.2)
        assert await k.views.total(8) == 2
    assert await denials(admin) == []


async def run_kaleido(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, str(REPO / "run.py"), *args],
            env=kaleido_env(**env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
