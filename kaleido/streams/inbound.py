"""The Redis side of one inbound stream, as the consumer sees it: a typed interface.

`InboundStream` is what the consumer calls (read, count deliveries, claim, dead-letter and
acknowledge, read group positions, trim); `RedisInboundStream` implements it over the gateway
and is the only place that knows the commands and their reply shapes. Tests implement the
same Protocol in memory.

How errors behave: every method raises the gateway's `kaleido.errors` (RedisUnavailable,
CircuitOpen, ...). A missing group is `NoGroup`, including a blocked read that Redis ends
because the stream was deleted (UNBLOCKED).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from kaleido.errors import NoGroup, RedisCommandError
from kaleido.gateways import RedisGateway, Script
from kaleido.messages import CONSUMER_GROUP, utc_timestamp
from kaleido.messages.dlq import Rejection, encode_dead_letter
from kaleido.replies import as_text, id_key, text_keys
from kaleido.streams.groups import ensure_group

# Dead-letter streams are bounded (approximately) so a flood of bad entries cannot fill Redis.
DLQ_MAXLEN = 100_000

# XPENDING's extended form through a script: redis-py's reply parser for XPENDING expects the
# summary form unless told otherwise, and the gateway passes raw commands only.
# KEYS: the stream; ARGV: group, first id, last id, count, consumer.
_PENDING_RANGE = Script(
    "pending_range",
    "return redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])",
    read_only=True,
)

# Dead-letter entries and acknowledge them, with the ids acknowledged as they are, in one step.
# KEYS: the stream, its DLQ. ARGV: group, DLQ MAXLEN, the number of dead letters, then for
# each its entry id, its field count and its fields; then the ids acknowledged as they are.
# Returns how many dead letters were written.
# Ambiguous call: a dead letter is copied only when this call's XACK acknowledged its entry.
# Run again after its reply was lost (redis-py resends it), the entries are acknowledged
# already: nothing is copied twice, and acknowledging twice changes nothing.
_DEAD_LETTER_AND_ACK = Script(
    "dead_letter_and_ack",
    """
local group, maxlen = ARGV[1], ARGV[2]
local at, written = 4, 0
for _ = 1, tonumber(ARGV[3]) do
  local size = tonumber(ARGV[at + 1])
  if redis.call('XACK', KEYS[1], group, ARGV[at]) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, at + 2, at + 1 + size))
    written = written + 1
  end
  at = at + 2 + size
end
for first = at, #ARGV, 1000 do  -- well below Lua's limit on unpack()ed arguments
  redis.call('XACK', KEYS[1], group, unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return written
""",
)


@attrs.frozen
class Entry:
    """One stream entry. `fields` is empty for an entry deleted or trimmed while pending."""

    id: str
    fields: Mapping[bytes, bytes]


@attrs.frozen
class Claimed:
    """One XAUTOCLAIM page: the entries taken over, and where the next page starts."""

    entries: list[Entry]
    cursor: str

    @property
    def done(self) -> bool:
        """The whole pending list was scanned."""
        return self.cursor == "0-0"


@attrs.frozen
class GroupPosition:
    """How far one consumer group has got: what it still has pending, and what it has read."""

    name: str
    pending: int
    oldest_pending: str | None  # the lowest pending id; None when nothing is pending
    last_delivered: str

    @property
    def floor(self) -> tuple[int, int]:
        """The oldest entry this group still needs: pending, or not yet delivered."""
        return id_key(self.oldest_pending if self.pending else self.last_delivered)


class InboundStream(Protocol):
    """One inbound stream, one consumer group, one consumer name."""

    async def create_group(self) -> bool:
        """Create the group (and the stream) from id 0; True if it was new, False if it
        existed."""
        ...

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` entries never delivered to the group, waiting up to `block_ms`."""
        ...

    async def read_pending(self, after: str, count: int) -> list[Entry]:
        """Up to `count` of this consumer's own pending entries with ids above `after`."""
        ...

    async def deliveries(self, entries: Sequence[Entry]) -> dict[str, int]:
        """How often each of `entries` (pending with this consumer) has been delivered."""
        ...

    async def reread_pending(self, after: str, count: int) -> tuple[list[Entry], dict[str, int]]:
        """Up to `count` of this consumer's own pending entries above `after`, with their
        delivery counts, WITHOUT counting this as a delivery (XPENDING, then XRANGE): for a
        re-read after an outage, which is no fault of the entries'."""
        ...

    async def claim_stale(self, min_idle: float, cursor: str, count: int) -> Claimed:
        """Take over up to `count` entries idle over `min_idle` seconds in any consumer's
        pending list, scanning from `cursor` ("0-0" to start)."""
        ...

    async def dead_letter_and_ack(self, rejected: Sequence[Rejection], done: Sequence[str]) -> None:
        """Copy `rejected` to the DLQ and acknowledge them with `done`, atomically: a dead
        letter is never acknowledged without its copy, and copied only by the call that
        acknowledged it (run twice, the second copies nothing)."""
        ...

    async def group_positions(self) -> list[GroupPosition]:
        """Every group of the stream (not only ours), with its pending and delivered ids."""
        ...

    async def trim_below(self, min_id: str) -> int:
        """Delete entries with ids below `min_id`; return how many went."""
        ...


def _entries(raw: Any) -> list[Entry]:
    return [Entry(as_text(entry_id), fields or {}) for entry_id, fields in raw or []]


@attrs.frozen
class RedisInboundStream:
    """`InboundStream` over the Redis gateway."""

    redis: RedisGateway
    stream_key: str
    dlq_key: str
    consumer: str
    group: str = CONSUMER_GROUP
    dlq_maxlen: int = DLQ_MAXLEN

    async def create_group(self) -> bool:
        created = await ensure_group(self.redis, self.stream_key, self.group)
        # A blocked XREADGROUP registers its consumer only when it returns entries, and the
        # quiet re-read after an outage (XPENDING, XRANGE) never does: without this, a consumer
        # waiting on a quiet stream is missing from XINFO CONSUMERS (the console, the doctor).
        await self.redis.execute(
            "XGROUP", "CREATECONSUMER", self.stream_key, self.group, self.consumer
        )
        return created

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        # Ambiguous call: entries whose reply was lost are pending with this consumer; the
        # retry reads the next ones, and those come back by a re-read of the pending ones
        # (after a restart or an outage) or by XAUTOCLAIM once idle: applied once by the ledger.
        return await self._read(">", count, block_ms)

    async def read_pending(self, after: str, count: int) -> list[Entry]:
        return await self._read(after, count, None)

    async def _read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        command: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block_ms is not None:
            command += ["BLOCK", block_ms]
        command += ["STREAMS", self.stream_key, start]
        try:
            reply = await self.redis.execute(*command)
        except RedisCommandError as exc:
            if exc.code == "UNBLOCKED":  # the stream was deleted while we were blocked
                raise NoGroup(str(exc)) from exc
            raise
        return _entries(reply[0][1]) if reply else []

    async def deliveries(self, entries: Sequence[Entry]) -> dict[str, int]:
        if not entries:
            return {}
        reply = await self.redis.run_script(
            _PENDING_RANGE,
            [self.stream_key],
            [self.group, entries[0].id, entries[-1].id, len(entries), self.consumer],
        )
        return {as_text(row[0]): int(row[3]) for row in reply or []}

    async def reread_pending(self, after: str, count: int) -> tuple[list[Entry], dict[str, int]]:
        start = "-" if after in ("0", "0-0") else f"({after}"
        rows = await self.redis.run_script(
            _PENDING_RANGE, [self.stream_key], [self.group, start, "+", count, self.consumer]
        )
        deliveries = {as_text(row[0]): int(row[3]) for row in rows or []}
        if not deliveries:
            return [], {}
        replies = await self.redis.pipeline([("XRANGE", self.stream_key, i, i) for i in deliveries])
        # An entry deleted or trimmed while pending has no fields left (triage acknowledges it).
        entries = [
            Entry(i, (found[0][1] or {}) if found else {})
            for i, found in zip(deliveries, replies, strict=True)
        ]
        return entries, deliveries

    async def claim_stale(self, min_idle: float, cursor: str, count: int) -> Claimed:
        # Ambiguous call: entries claimed by a call whose reply was lost are pending with this
        # consumer (their delivery counted once more); they are handled as a lost read's are.
        reply = await self.redis.execute(
            "XAUTOCLAIM",
            self.stream_key,
            self.group,
            self.consumer,
            int(min_idle * 1000),
            cursor,
            "COUNT",
            count,
        )
        return Claimed(_entries(reply[1]), as_text(reply[0]))

    async def dead_letter_and_ack(self, rejected: Sequence[Rejection], done: Sequence[str]) -> None:
        if not rejected and not done:
            return
        failed_at = utc_timestamp()
        args: list[Any] = [self.group, self.dlq_maxlen, len(rejected)]
        for r in rejected:
            fields = encode_dead_letter(r, failed_at)
            args += [r.entry_id, len(fields), *fields]
        args += done
        await self.redis.run_script(_DEAD_LETTER_AND_ACK, [self.stream_key, self.dlq_key], args)

    async def group_positions(self) -> list[GroupPosition]:
        groups = await self.redis.execute("XINFO", "GROUPS", self.stream_key)
        positions = []
        for raw in groups or []:
            info = text_keys(raw)
            name = as_text(info["name"])
            summary = await self.redis.execute("XPENDING", self.stream_key, name)
            pending = int(summary["pending"])
            positions.append(
                GroupPosition(
                    name=name,
                    pending=pending,
                    oldest_pending=as_text(summary["min"]) if pending else None,
                    last_delivered=as_text(info["last-delivered-id"]),
                )
            )
        return positions

    async def trim_below(self, min_id: str) -> int:
        return int(await self.redis.execute("XTRIM", self.stream_key, "MINID", min_id))


async def read_range(redis: RedisGateway, key: str, start: str, count: int) -> list[Entry]:
    """Up to `count` entries of `key` from `start` (inclusive; "(id" exclusive; "-" first)."""
    return _entries(await redis.execute("XRANGE", key, start, "+", "COUNT", count))


async def length(redis: RedisGateway, key: str) -> int:
    """XLEN: 0 for a stream that does not exist."""
    return int(await redis.execute("XLEN", key))
