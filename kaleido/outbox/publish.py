"""The Redis side of the relay: add each announcement to its stream exactly once.

`PUBLISH_ONCE` adds the entry (`XADD ... MAXLEN ~`) and marks the outbox row's id in a sorted
set beside the stream (`KeyLayout.outbox_marks`, the stream's slot on a cluster), in one
script: run again for the same row (the relay's reply was lost, or it died before deleting the
row) it finds the mark and adds nothing. Marks are removed once the rows they stand for are
deleted (`forget`), and any left behind by a crash after `retention` (`sweep`).

How errors behave: any entry that could not be added raises the gateway's error; entries added
before it keep their marks, so the retry skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from kaleido.gateways import RedisGateway, Script
from kaleido.keys import KeyLayout
from kaleido.messages import OUTBOUND_STREAMS
from kaleido.outbox.store import Announcement

# KEYS: the stream, its marks. ARGV: the outbox row id, MAXLEN, then field, value, ...
# Returns the new entry's id, or false when the row was published before.
PUBLISH_ONCE = Script(
    "outbox_publish_once",
    """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], now[1] * 1000 + math.floor(now[2] / 1000), ARGV[1])
return id
""",
)

# A mark outlives its row only when a relay died between deleting the row and removing the
# mark; long enough that no row can still be waiting for it, short enough to stay small.
MARK_RETENTION = 24 * 3600.0


class Announcer(Protocol):
    async def publish(self, announcements: Sequence[Announcement]) -> int:
        """Add each announcement's entry to its stream unless it was added before; return how
        many were added now. Raises if any could not be added."""
        ...

    async def forget(self, announcements: Sequence[Announcement]) -> None:
        """The rows are deleted: drop their marks."""
        ...

    async def sweep(self, retention: float = MARK_RETENTION) -> int:
        """Drop marks older than `retention` seconds; return how many."""
        ...


@attrs.frozen
class RedisAnnouncer:
    """`Announcer` over the Redis gateway; streams are trimmed to about `maxlen`."""

    redis: RedisGateway
    keys: KeyLayout
    maxlen: int

    async def publish(self, announcements: Sequence[Announcement]) -> int:
        calls = [
            (
                [self.keys.stream(a.stream), self.keys.outbox_marks(a.stream)],
                [a.outbox_id, self.maxlen, *(part for pair in a.fields for part in pair)],
            )
            for a in announcements
            if a.fields is not None
        ]
        replies = await self.redis.run_scripts(PUBLISH_ONCE, calls)
        return sum(reply is not None for reply in replies)

    async def forget(self, announcements: Sequence[Announcement]) -> None:
        by_stream: dict[str, list[int]] = {}
        for a in announcements:
            by_stream.setdefault(a.stream, []).append(a.outbox_id)
        commands = [
            ["ZREM", self.keys.outbox_marks(stream), *ids] for stream, ids in by_stream.items()
        ]
        await self.redis.pipeline(commands)

    async def sweep(self, retention: float = MARK_RETENTION) -> int:
        reply = await self.redis.execute("TIME")
        now_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000
        cutoff = now_ms - int(retention * 1000)
        commands = [
            ["ZREMRANGEBYSCORE", self.keys.outbox_marks(s), "-inf", f"({cutoff}"]
            for s in OUTBOUND_STREAMS
        ]
        return sum(int(n) for n in await self.redis.pipeline(commands))
