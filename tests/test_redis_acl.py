"""Kaleido as a least-privilege Redis user: the rule `kaleido.redis_acl` builds lets the whole
view and stream path run (Redis's ACL log stays empty), and a user that lacks a right gets a
clear start-up error, not a crash loop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from kaleido import open_kaleido
from kaleido.devstack import DevStack
from kaleido.errors import ConfigError, RedisPermissionDenied
from kaleido.gateways import RedisGateway, open_backends
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS, POST_IMAGE_STREAM
from kaleido.ops.doctor import Level, diagnose
from kaleido.ops.streams import read_streams
from kaleido.posts import MediaItem, NewPost
from kaleido.profiles import ProfilePicture
from kaleido.redis_acl import COMMANDS, acl_rule, acl_setuser_args, key_patterns
from kaleido.redis_preflight import check_redis_rights
from kaleido.settings import Settings
from kaleido.streams import dlq_list, dlq_purge, dlq_replay
from kaleido.streams.dlq import dlq_last_id, dlq_page, dlq_purge_through
from kaleido.testing import KaleidoDriver

from .conftest import REPO
from .processes import kaleido_env
from .waiting import wait_until

USER, PASSWORD = "kaleido-acl", "acl-test-password-0123456789"


@pytest.fixture
async def admin(kaleido_settings: Settings) -> AsyncIterator[RedisGateway]:
    """The Redis default user, which creates the restricted one and reads the ACL log."""
    async with open_backends(kaleido_settings) as backends:
        yield backends.redis


def as_user(settings: Settings, user: str = USER, password: str = PASSWORD) -> Settings:
    """The same settings, connecting to Redis as `user` (the test URLs carry no credentials)."""
    assert settings.redis_url is not None
    scheme, _, rest = settings.redis_url.partition("://")
    return attrs.evolve(settings, redis_url=f"{scheme}://{user}:{password}@{rest}")


async def set_user(admin: RedisGateway, settings: Settings, *, without: str = "") -> None:
    args = acl_setuser_args(KeyLayout(settings.key_prefix), f">{PASSWORD}")
    if without:
        args.append(f"-{without}")
    await admin.execute("ACL", "SETUSER", USER, *args)
    await admin.execute("ACL", "LOG", "RESET")


async def denials(admin: RedisGateway) -> list[dict[str, Any]]:
    entries = await admin.execute("ACL", "LOG")
    return [
        {_text(k): _text(v) for k, v in (e.items() if isinstance(e, dict) else _pairs(e))}
        for e in entries
    ]


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def caption(media_id: int, post_id: int) -> dict[str, str]:
    return {
        "mediaId": str(media_id), "postId": str(post_id), "service": "image_captioning",
        "caption": "a cat", "correlationId": f"acl-{media_id}",
        "timestamp": "2026-05-04T10:15:30Z", "version": "1",
    }  # fmt: skip


async def test_the_whole_path_runs_with_exactly_the_rules(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings)
    await exercise(as_user(kaleido_settings), post_id=5, media_id=11)
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
        cluster = backends.redis  # ACLs are per node: set the user on every master
        args = acl_setuser_args(backends.keys, f">{PASSWORD}")
        await cluster.on_masters("ACL", "SETUSER", USER, *args)
        await cluster.on_masters("ACL", "LOG", "RESET")
        await exercise(as_user(base), post_id=90005, media_id=90011)
        logs = await cluster.on_each_master("ACL", "LOG")
    assert all(not entries for entries in logs.values()), logs


async def exercise(settings: Settings, *, post_id: int, media_id: int) -> None:
    """Views, streams and operations, each at least once, as the user `settings` names."""
    async with open_kaleido(settings) as k:
        driver = KaleidoDriver(k, settings)
        backends = k.service.backends
        await backends.postgres.execute(
            "INSERT INTO posts (post_id, user_id, status) VALUES ($1, 1, 'PUBLISHED') "
            "ON CONFLICT DO NOTHING",
            post_id,
        )
        await backends.postgres.execute(
            "INSERT INTO post_media (media_id, post_id, media_url, position) "
            "VALUES ($1, $2, 'https://cdn.example.com/m.jpg', 0) ON CONFLICT DO NOTHING",
            media_id,
            post_id,
        )
        # Views: record, read exactly, sync, read again.
        result = await k.views.record_and_wait(
            [(u, post_id) for u in range(1, 21)] + [(1, post_id)]
        )
        assert result.counted == 20
        assert await k.views.total(post_id) == 20
        assert (await k.sync_now()).views == 20
        assert await k.views.total(post_id) == 20
        # Streams: announce (the outbox relay publishes), consume, dead-letter, replay, purge.
        new_media = MediaItem(media_id + 1, "https://cdn.example.com/n.jpg")
        await k.service.posts.create(NewPost(post_id + 1, 1, (new_media,)))
        await k.service.profiles.change_picture(
            ProfilePicture(1, "https://cdn.example.com/p.jpg", "alice")
        )

        async def relayed() -> bool:
            return not await backends.postgres.fetchval("SELECT count(*) FROM outbox")

        await wait_until(relayed)
        image_key = backends.keys.stream(POST_IMAGE_STREAM)
        assert int(await backends.redis.execute("XLEN", image_key)) >= 1
        with trio.fail_after(10):
            assert (await driver.feed(INBOUND_STREAMS[0], caption(media_id, post_id))).applied
            bad = await driver.feed(
                INBOUND_STREAMS[0], {"postId": str(post_id), "service": "tagging"}
            )
        assert bad.outcome == "dead_lettered"
        keys = backends.keys
        letters = await dlq_list(backends.redis, keys, INBOUND_STREAMS[0])
        assert len(await dlq_replay(backends.redis, keys, INBOUND_STREAMS[0], [letters[0].dlq_id]))

        async def back_in_the_dlq() -> bool:  # the replayed entry fails again
            return bool(await dlq_list(backends.redis, keys, INBOUND_STREAMS[0]))

        await wait_until(back_in_the_dlq)
        page = await dlq_page(backends.redis, keys, INBOUND_STREAMS[0], error_type="DecodeError")
        assert len(page.letters) == 1  # the ops console's reads and its bounded purge
        last = await dlq_last_id(backends.redis, keys, INBOUND_STREAMS[0])
        assert last is not None
        assert await dlq_purge_through(backends.redis, keys, INBOUND_STREAMS[0], last) == 1
        assert await dlq_purge(backends.redis, keys, INBOUND_STREAMS[0]) == 0
        # Operations: the reporter, housekeeping, the stream snapshot and the doctor.
        assert k.service.reporter is not None and await k.service.reporter.sample_once()
        for consumer in k.service.consumers:
            await consumer.reclaim()
            await consumer.trim()
            await consumer.prune()
        assert len(await read_streams(backends.redis, keys)) == 10
        findings = await diagnose(backends, dlq_interval=0)
        assert not [f for f in findings if "permission" in f.message.lower()], findings
        await check_redis_rights(backends.redis, keys)


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
    assert "+flushall" not in line and "+keys" not in line and "+config|set" not in line
    cluster = key_patterns(KeyLayout("app:", cluster=True))
    assert "{app:ml-insights-results}:dlq" in cluster


async def test_a_right_revoked_while_running_loses_no_view(
    admin: RedisGateway, kaleido_settings: Settings
) -> None:
    await set_user(admin, kaleido_settings)
    async with open_kaleido(as_user(kaleido_settings)) as k:
        await admin.execute("ACL", "SETUSER", USER, "-evalsha")  # view scripts refused
        result = await k.views.record_and_wait([(1, 9), (2, 9)])
        assert result.counted == 2  # journaled in PostgreSQL, not lost
        assert k.service.supervisor.actors["view-ingester"].finished is False
        await admin.execute("ACL", "SETUSER", USER, "+evalsha")
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


async def run_kaleido(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, str(REPO / "run.py"), *args],
            env=kaleido_env(**env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
