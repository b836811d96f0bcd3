"""The Redis side of view counting: record batches, move counters into batches, snapshots."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs

from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.views import scripts


@attrs.frozen
class PostSnapshot:
    """One post's Redis-side views at one instant."""

    epoch: int
    counter: int
    in_flight: dict[str, int]  # batch id → this post's views in that batch
    replayed: list[str]  # journal replay batches already applied to Redis


@attrs.define
class ViewStore:
    redis: RedisGateway
    keys: KeyLayout
    dedup_ttl: int = 86400

    async def record(self, views: Sequence[tuple[int, int]]) -> tuple[list[bool], int]:
        """Apply (user, post) views atomically; return which were counted and pending size."""
        packed = ",".join(map(str, itertools.chain.from_iterable(views)))  # ids are ints
        args = [self.keys.prefix, self.dedup_ttl, packed]
        flags, pending = await self.redis.run_script(scripts.RECORD_VIEWS, [], args)
        return [flag == 49 for flag in flags], int(pending)  # 49 == ord("1")

    async def move_to_batch(self, batch_id: str, count: int) -> tuple[int, int, int]:
        """Move up to `count` pending counters into batch `batch_id`: (popped, posts, views)."""
        popped, deltas = await self.take_batch(batch_id, count)
        return popped, len(deltas), sum(deltas.values())

    async def take_batch(self, batch_id: str, count: int) -> tuple[int, dict[int, int]]:
        """Move up to `count` pending counters into batch `batch_id`: (popped, its contents)."""
        keys = self.keys
        reply = await self.redis.run_script(
            scripts.MOVE_TO_BATCH,
            [keys.pending, keys.batches, keys.batch(batch_id), keys.sync_epoch],
            [keys.prefix, batch_id, count],
        )
        it = iter(reply[2:])
        return int(reply[0]), {int(post): int(views) for post, views in zip(it, it, strict=True)}

    async def in_flight_batches(self) -> list[str]:
        members = await self.redis.execute("SMEMBERS", self.keys.batches)
        return sorted(m.decode() for m in members)

    async def batch_contents(self, batch_id: str) -> dict[int, int]:
        raw = await self.redis.execute("HGETALL", self.keys.batch(batch_id))
        return {int(post): int(views) for post, views in raw.items()}

    async def forget_batch(self, batch_id: str) -> None:
        """Delete an applied batch (idempotent)."""
        await self.redis.pipeline(
            [("DEL", self.keys.batch(batch_id)), ("SREM", self.keys.batches, batch_id)],
            transaction=True,
        )

    async def snapshot(self, post_id: int) -> PostSnapshot:
        keys = self.keys
        reply = await self.redis.run_script(
            scripts.SNAPSHOT_POST,
            [keys.sync_epoch, keys.batches, keys.post_views(post_id), keys.journal_done],
            [keys.prefix, post_id],
        )
        in_flight = {reply[i].decode(): int(reply[i + 1]) for i in range(3, len(reply), 2)}
        return PostSnapshot(int(reply[0]), int(reply[1]), in_flight, reply[2].decode().split())

    async def epoch(self) -> int:
        return int(await self.redis.execute("GET", self.keys.sync_epoch) or 0)

    async def pending_size(self) -> int:
        return int(await self.redis.execute("SCARD", self.keys.pending))
