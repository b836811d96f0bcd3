"""Kaleido as its least-privilege Redis user: make the user, connect as it, read what Redis's ACL
log says it refused, and run the whole view and stream path (shared by tests/test_redis_acl.py
and the red-team tests)."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from kaleido import open_kaleido
from kaleido.app import service_of
from kaleido.gateways import FUNCTIONS, RedisGateway
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS, POST_IMAGE_STREAM
from kaleido.ops.doctor import diagnose
from kaleido.ops.streams import read_streams
from kaleido.posts import MediaItem
from kaleido.redis_acl import acl_setuser_args
from kaleido.redis_preflight import check_redis_rights
from kaleido.settings import Settings
from kaleido.streams import dlq_list, dlq_purge, dlq_replay
from kaleido.streams.dlq import dlq_last_id, dlq_page, dlq_purge_through
from kaleido.testing import KaleidoDriver

from ..waiting import wait_until

USER, PASSWORD = "kaleido-acl", "acl-test-password-0123456789"


def as_user(settings: Settings, user: str = USER, password: str = PASSWORD) -> Settings:
    """The same settings, connecting to Redis as `user` instead of the admin the test servers'
    URLs name."""
    assert settings.redis_url is not None
    scheme, _, rest = settings.redis_url.partition("://")
    hosts = rest.rpartition("@")[2]  # without the admin's credentials
    return attrs.evolve(settings, redis_url=f"{scheme}://{user}:{password}@{hosts}")


async def set_user(
    admin: RedisGateway, settings: Settings, *, without: str = "", scripts: str = FUNCTIONS
) -> None:
    """Give `USER` exactly the rule of `kaleido.redis_acl` (less one right, `without`), and
    empty the ACL log."""
    args = acl_setuser_args(KeyLayout(settings.key_prefix), f">{PASSWORD}", scripts=scripts)
    if without:
        args.append(f"-{without}")
    await admin.execute("ACL", "SETUSER", USER, *args)
    await admin.execute("ACL", "LOG", "RESET")


async def denials(admin: RedisGateway) -> list[dict[str, Any]]:
    """Redis's ACL log: what it refused since the last reset."""
    entries = await admin.execute("ACL", "LOG")
    return [
        {_text(k): _text(v) for k, v in (e.items() if isinstance(e, dict) else _pairs(e))}
        for e in entries
    ]


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def caption(media_id: int, post_id: int) -> dict[str, str]:
    return {
        "mediaId": str(media_id), "postId": str(post_id), "service": "image_captioning",
        "caption": "a cat", "correlationId": f"acl-{media_id}",
        "timestamp": "2026-05-04T10:15:30Z", "version": "1",
    }  # fmt: skip


async def exercise(settings: Settings, *, post_id: int, media_id: int) -> None:
    """Views, streams and operations, each at least once, as the user `settings` names."""
    async with open_kaleido(settings) as k:
        driver = KaleidoDriver(k, settings)
        backends = service_of(k).backends
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
        result = await k.views.record([(u, post_id) for u in range(1, 21)] + [(1, post_id)])
        assert result.counted == 20
        assert await k.views.total(post_id) == 20
        assert (await k.sync_now()).views == 20
        assert await k.views.total(post_id) == 20
        # Streams: announce (the outbox relay publishes), consume, dead-letter, replay, purge.
        new_media = MediaItem(media_id + 1, "https://cdn.example.com/n.jpg")
        await k.posts.create(post_id + 1, 1, [new_media])
        await k.posts.set_profile_picture(1, "https://cdn.example.com/p.jpg", username="alice")

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
        reporter = service_of(k).reporter
        assert reporter is not None and await reporter.sample_once()
        for consumer in service_of(k).consumers:
            await consumer.reclaim()
            await consumer.trim()
            await consumer.prune()
        assert len(await read_streams(backends.redis, keys)) == 10
        findings = await diagnose(backends, dlq_interval=0)
        assert not [f for f in findings if "permission" in f.message.lower()], findings
        assert not [f for f in findings if f.check == "scripts" and f.level.name == "PROBLEM"]
        await check_redis_rights(backends.redis, keys)
