"""A read-only snapshot of Kaleido's streams: length, groups (lag, pending, oldest pending
entry), consumers (idle times) and dead-letter queue sizes.

Used by the metrics reporter, `GET /v1/admin/streams`, `kaleido streams`, `doctor` and `top`.
A stream that does not exist yet reads as empty with no groups (never an error).
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from cattrs.gen import override

from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS, OUTBOUND_STREAMS
from kaleido.messages.converter import converter, register_answer
from kaleido.replies import as_text, id_key, text_keys

ALL_STREAMS = INBOUND_STREAMS + OUTBOUND_STREAMS
# A stream entry id as an operator may type it (`1700000000000-0`).
ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
MAX_ENTRY_PART = 2**64 - 1


def is_entry_id(text: str) -> bool:
    """A stream entry id Redis takes: two unsigned 64-bit parts (a larger one is an error
    reply, not a miss)."""
    if not ENTRY_ID.fullmatch(text):  # `$` alone would let a trailing newline through
        return False
    return all(int(part) <= MAX_ENTRY_PART for part in text.split("-"))


def _text(value: Any) -> str:
    return as_text(value, "replace")


@attrs.frozen
class ConsumerStatus:
    name: str
    pending: int
    idle_seconds: float


@attrs.frozen
class GroupStatus:
    name: str
    lag: int | None  # None when Redis cannot tell (entries deleted from the middle)
    pending: int
    oldest_pending_age: float | None  # seconds since the oldest pending entry was added
    consumers: tuple[ConsumerStatus, ...]

    def idle_consumers(self, limit: float) -> list[ConsumerStatus]:
        return [c for c in self.consumers if c.idle_seconds > limit]


@attrs.frozen
class StreamStatus:
    stream: str  # the contract's name, without the deployment prefix
    inbound: bool
    length: int
    dlq_size: int
    groups: tuple[GroupStatus, ...]

    @property
    def lag(self) -> int:
        return sum(g.lag or 0 for g in self.groups)

    @property
    def pending(self) -> int:
        return sum(g.pending for g in self.groups)

    def as_json(self) -> dict[str, Any]:
        """The stream's status as `/v1/admin/streams` and `kaleido streams --json` show it."""
        result: dict[str, Any] = converter.unstructure(self)
        return result


def _direction(inbound: bool) -> str:
    return "inbound" if inbound else "outbound"


register_answer(ConsumerStatus)
register_answer(GroupStatus, oldest_pending_age=override(rename="oldestPendingAgeSeconds"))
register_answer(StreamStatus, inbound=override(rename="direction", unstruct_hook=_direction))


async def dlq_sizes(redis: RedisGateway, keys: KeyLayout) -> dict[str, int]:
    """The DLQ length of every inbound stream, in one round trip."""
    replies = await redis.pipeline([("XLEN", keys.dlq(s)) for s in INBOUND_STREAMS])
    return {s: int(n) for s, n in zip(INBOUND_STREAMS, replies, strict=True)}


async def read_streams(
    redis: RedisGateway, keys: KeyLayout, streams: tuple[str, ...] = ALL_STREAMS
) -> list[StreamStatus]:
    """A snapshot of `streams`; a few round trips whatever the number of groups.

    Raises the gateway's errors (RedisUnavailable, CircuitOpen, ...) when Redis does not answer.
    """
    first: list[Any] = [("TIME",)]
    for s in streams:
        first += [("TYPE", keys.stream(s)), ("XLEN", keys.stream(s))]
        first += [("XLEN", keys.dlq(s))]
    replies = await redis.pipeline(first)
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    existing = [
        s for i, s in enumerate(streams) if _text(replies[1 + 3 * i]) == "stream"
    ]  # XINFO on a missing key is an error, so ask only about streams that exist
    infos = await redis.pipeline([("XINFO", "GROUPS", keys.stream(s)) for s in existing])
    groups_of = {s: [text_keys(g) for g in info or []]
                 for s, info in zip(existing, infos, strict=True)}  # fmt: skip
    detail: list[Any] = []
    for s in existing:
        for g in groups_of[s]:
            detail += [
                ("XPENDING", keys.stream(s), g["name"]),
                ("XINFO", "CONSUMERS", keys.stream(s), g["name"]),
            ]
    details = iter(await redis.pipeline(detail))
    out: list[StreamStatus] = []
    for i, s in enumerate(streams):
        groups: list[GroupStatus] = []
        for g in groups_of.get(s, []):
            summary, consumers = next(details), next(details)
            oldest = (
                max(0.0, (now_ms - id_key(summary["min"])[0]) / 1000)
                if summary and summary.get("pending")
                else None
            )
            groups.append(
                GroupStatus(
                    name=_text(g["name"]),
                    lag=None if g.get("lag") is None else int(g["lag"]),
                    pending=int(g.get("pending") or 0),
                    oldest_pending_age=oldest,
                    consumers=tuple(_consumer(c) for c in consumers or []),
                )
            )
        out.append(
            StreamStatus(
                stream=s,
                inbound=s in INBOUND_STREAMS,
                length=int(replies[2 + 3 * i]),
                dlq_size=int(replies[3 + 3 * i]),
                groups=tuple(groups),
            )
        )
    return out


def _consumer(raw: dict[Any, Any]) -> ConsumerStatus:
    info = text_keys(raw)
    return ConsumerStatus(
        name=_text(info["name"]),
        pending=int(info.get("pending") or 0),
        idle_seconds=int(info.get("idle") or 0) / 1000,
    )
