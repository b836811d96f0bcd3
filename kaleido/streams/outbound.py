"""The Redis side of the outbound streams, as the publisher sees it: a typed interface.

`OutboundStreams.append` adds entries, each trimmed to about `maxlen` (`MAXLEN ~`), in one
round trip; `RedisOutbound` implements it over the gateway (tests use an in-memory one).
How errors behave: any entry that could not be added raises the gateway's error
(`kaleido.errors`); the others may have been added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from kaleido.gateways import RedisGateway
from kaleido.replies import as_text


@attrs.frozen
class OutboundEntry:
    """One entry to add: the stream's key, its fields, and the length to trim the stream to."""

    key: str
    fields: Mapping[str, str]
    maxlen: int


class OutboundStreams(Protocol):
    async def append(self, entries: Sequence[OutboundEntry]) -> list[str]:
        """Add `entries` in one round trip; return their ids, in order."""
        ...


@attrs.frozen
class RedisOutbound:
    """`OutboundStreams` over the Redis gateway: XADD key MAXLEN ~ n * field value ..."""

    redis: RedisGateway

    async def append(self, entries: Sequence[OutboundEntry]) -> list[str]:
        commands = [xadd_command(entry) for entry in entries]
        if len(commands) == 1:
            return [as_text(await self.redis.execute(*commands[0]))]
        return [as_text(reply) for reply in await self.redis.pipeline(commands)]


def xadd_command(entry: OutboundEntry) -> list[Any]:
    """XADD key MAXLEN ~ maxlen * name value ..., the fields in their order."""
    command: list[Any] = ["XADD", entry.key, "MAXLEN", "~", str(entry.maxlen), "*"]
    for name, value in entry.fields.items():
        command += (name, value)
    return command
