"""`KaleidoDriver`: a running Kaleido and the handles a test needs to drive it deterministically
(`sync()`, `drained()`, `feed(stream, fields)`), and `Fed`, what became of a fed entry."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from kaleido.embedded import Kaleido, Views, service_of
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS
from kaleido.replies import as_text, id_key
from kaleido.settings import Settings
from kaleido.streams import dlq_list
from kaleido.streams.inbound import RedisInboundStream
from kaleido.views.model import SyncReport

DLQ_SCAN = 1000  # dead letters read to find a fed entry's


@attrs.frozen
class Fed:
    """What became of an entry `KaleidoDriver.feed` added."""

    entry_id: str
    # "applied" (its effect committed), "ignored" (acknowledged with no effect, e.g. a service
    # this version does not know) or "dead_lettered" (with `dead_letter_error`).
    outcome: str
    dead_letter_error: str | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


@attrs.define
class KaleidoDriver:
    """A running Kaleido and the handles a test needs to drive it."""

    kaleido: Kaleido
    settings: Settings

    @property
    def views(self) -> Views:
        return self.kaleido.views

    async def sync(self) -> SyncReport:
        """Sync buffered views to PostgreSQL now."""
        return await self.kaleido.sync_now()

    async def drained(self) -> None:
        """Wait until every view recorded so far is durable (or was refused)."""
        await self.kaleido.drained()

    async def feed(self, stream: str, fields: Mapping[str, str]) -> Fed:
        """Add an entry to an inbound stream as the ML service would, wait until the consumer
        has dealt with it, and say how: applied, or dead-lettered with its reason. Bound the
        wait with `trio.fail_after` in the test."""
        if stream not in INBOUND_STREAMS:
            raise ValueError(f"{stream!r} is not one of {', '.join(INBOUND_STREAMS)}")
        service = service_of(self.kaleido)
        redis, key = service.backends.redis, service.backends.keys.stream(stream)
        flat = [part for pair in fields.items() for part in pair]
        raw = await redis.execute("XADD", key, "*", *flat)
        entry_id = as_text(raw)
        while not await self._settled(key, entry_id):  # noqa: ASYNC110 - state is in Redis
            await trio.sleep(0.01)
        letters = await dlq_list(redis, service.backends.keys, stream, DLQ_SCAN)
        for letter in letters:
            if letter.original_id == entry_id:
                return Fed(entry_id, "dead_lettered", letter.error)
        recorded = await service.backends.postgres.fetchval(
            "SELECT count(*) FROM processed_messages WHERE stream = $1 AND entry_id = $2",
            key,
            entry_id,
        )
        return Fed(entry_id, "applied" if recorded else "ignored")

    async def _settled(self, key: str, entry_id: str) -> bool:
        """Delivered to the group, and nothing of the group pending: the consumer acknowledged
        it (entries are fed one at a time)."""
        redis = service_of(self.kaleido).backends.redis
        stream = RedisInboundStream(redis, key, dlq_key="", consumer="kaleido-testing")
        for group in await stream.group_positions():
            if group.name == CONSUMER_GROUP:
                return id_key(group.last_delivered) >= id_key(entry_id) and group.pending == 0
        return False
