"""What the campaign found, each as one deterministic case: the fault proxy drops the reply to
one chosen call after the call ran (the ambiguous case)."""

from __future__ import annotations

import attrs
import trio

from kaleido import open_kaleido
from kaleido.devstack import DevStack, RedisServer
from kaleido.gateways import Backends
from kaleido.messages import INSIGHTS_STREAM, InsightResult, Tagging, encode_insight
from kaleido.settings import Settings
from kaleido.streams import dlq_list

from ..waiting import wait_until
from .proxy import FaultProxy

MEDIA, POST = 42, 7  # neither has a row: results are recorded all the same


def tagging(*tags: str) -> dict[str, str]:
    return encode_insight(InsightResult(MEDIA, POST, Tagging(tags), "c-1"))


async def processed(backends: Backends, entry_id: str) -> bool:
    return bool(
        await backends.postgres.fetchval(
            "SELECT count(*) FROM processed_messages WHERE entry_id = $1", entry_id
        )
    )


async def stored_tags(backends: Backends) -> list[str]:
    return list(
        await backends.postgres.fetchval(
            "SELECT tags FROM media_ai_insights WHERE media_id = $1", MEDIA
        )
    )


async def test_a_result_read_again_after_its_reply_was_lost_does_not_undo_a_newer_one(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    assert isinstance(stack.redis, RedisServer)
    proxy = FaultProxy(stack.redis.port)
    await nursery.start(proxy.run)
    through_proxy = attrs.evolve(
        settings, redis_url=stack.redis.url.replace(f":{stack.redis.port}/", f":{proxy.port}/")
    )
    stream = backends.keys.stream(INSIGHTS_STREAM)
    async with open_kaleido(through_proxy):
        # The consumer's blocking read of new entries: its reply (the first result) is dropped
        # after Redis delivered it, and redis-py sends the read again on a new connection.
        proxy.faults.drop_reply_to = stream.encode() + b"\r\n$1\r\n>\r\n"
        older = await backends.redis.execute("XADD", stream, "*", *flat(tagging("older")))
        await wait_until(lambda: _true(proxy.dropped_replies == 1), timeout=10)
        newer = await backends.redis.execute("XADD", stream, "*", *flat(tagging("newer")))
        await wait_until(lambda: processed(backends, newer.decode()), timeout=10)
        assert await stored_tags(backends) == ["newer"]
    async with open_kaleido(settings):  # a restart: the consumer re-reads its pending entries
        await wait_until(lambda: processed(backends, older.decode()), timeout=10)
        assert await stored_tags(backends) == ["newer"]  # stream order: the newer result wins


async def test_postgresql_errors_do_not_dead_letter_a_valid_entry(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    proxy = FaultProxy(stack.postgres.port)
    await nursery.start(proxy.run)
    through_proxy = attrs.evolve(
        settings,
        database_url=stack.postgres.url.replace(f":{stack.postgres.port}/", f":{proxy.port}/"),
    )
    stream = backends.keys.stream(INSIGHTS_STREAM)
    async with open_kaleido(through_proxy):
        # The reply to each statement on processed_messages (the one that applies the entry
        # and records it, then the look-ups of a redelivery) is lost after it ran, until the
        # entry has been delivered MAX_DELIVERIES + 1 times.
        proxy.faults.drop_reply_to = b"processed_messages"
        entry = (await backends.redis.execute("XADD", stream, "*", *flat(tagging("one")))).decode()

        async def settled() -> bool:
            """Acknowledged, after being applied or dead-lettered."""
            dead = await backends.redis.execute("XLEN", backends.keys.dlq(INSIGHTS_STREAM))
            return await pending_is_empty(backends, stream) and (
                dead > 0 or await processed(backends, entry)
            )

        for _ in range(settings.max_deliveries + 1):
            drops = proxy.dropped_replies

            async def dropped_or_settled(drops: int = drops) -> bool:
                return proxy.dropped_replies > drops or await settled()

            await wait_until(dropped_or_settled, timeout=30)
            proxy.faults.drop_reply_to = b"processed_messages"
        proxy.faults.drop_reply_to = b""
        await wait_until(settled, timeout=30)
        letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
        assert not letters, [(x.error_type, x.error) for x in letters]
        assert await processed(backends, entry)


async def pending_is_empty(backends: Backends, stream: str) -> bool:
    summary = await backends.redis.execute("XPENDING", stream, "backend-group")
    return int(summary["pending"] if isinstance(summary, dict) else summary[0]) == 0


def flat(fields: dict[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


async def _true(value: bool) -> bool:
    return value
