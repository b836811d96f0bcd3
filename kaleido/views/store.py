"""The Redis side of view counting (layout v2): record views, move counters into sync batches,
take a post's snapshot. Every call touches one partition; calls for several are pipelined.

A batch in flight is named by a `BatchRef`: its partition and id, or partition None for a
batch of the v1 layout being drained during a takeover (`kaleido.views.legacy`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from kaleido.errors import TransientError
from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.views import scripts
from kaleido.views.dedup import VIEW_HEADER, Directories, depth_in, low_bits, pack_pair
from kaleido.views.layout import LayoutState, open_layout, read_state
from kaleido.views.legacy import LegacyKeys, LegacyViews

# A call finds the caller's directory copy stale only when another process split a bucket
# since it was read; a few refreshes always settle it.
MAX_ADDRESS_ATTEMPTS = 8

BatchRef = tuple[int | None, str]

_VIEW_HEADER = struct.Struct(VIEW_HEADER)


@attrs.frozen
class PostSnapshot:
    """One post's Redis-side views at one instant."""

    epoch: tuple[int, int]  # the partition's epoch, and v1's (0 once no v1 counter is left)
    counter: int
    in_flight: dict[str, int]  # batch id → this post's views in that batch
    replayed: list[str]  # journal replay batches already applied to Redis for this post


@attrs.define
class ViewStore:
    redis: RedisGateway
    keys: KeyLayout
    dedup_ttl: int = 86400
    # Unix ms for the dedup scripts to decide by instead of Redis' TIME: tests move time with it.
    clock: Callable[[], int] | None = None
    directories: Directories = attrs.Factory(Directories)
    legacy: LegacyViews = attrs.field(init=False)
    _state: LayoutState | None = attrs.field(default=None, init=False)
    _clock_offset_ms: int | None = attrs.field(default=None, init=False)
    _pending: dict[int, int] = attrs.field(factory=dict, init=False)
    _known_batches: dict[int, list[str]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self.legacy = LegacyViews(self.redis, LegacyKeys(self.keys.prefix))

    # -- layout ------------------------------------------------------------------------------

    async def layout(self) -> LayoutState:
        """The layout record, created or checked on first use (ConfigError on a mismatch)."""
        if self._state is None:
            self._state = await open_layout(self.redis, self.keys, self.dedup_ttl)
        return self._state

    async def refresh_layout(self) -> LayoutState:
        self._state = await read_state(self.redis, self.keys)
        return self._state

    # -- recording ---------------------------------------------------------------------------

    async def record(self, views: Sequence[tuple[int, int]]) -> tuple[list[bool], int]:
        """Apply (user, post) views atomically per partition: which counted, and pending posts."""
        flags = [False] * len(views)
        await self._apply(views, flags, batch_id="")
        return flags, sum(self._pending.values())

    async def replay(self, batch_id: str, views: Sequence[tuple[int, int]]) -> int:
        """Apply journal views through the same dedup, once per batch: how many counted now."""
        flags = [False] * len(views)
        await self._apply(views, flags, batch_id=batch_id)
        return sum(flags)

    async def _apply(
        self, views: Sequence[tuple[int, int]], flags: list[bool], batch_id: str
    ) -> None:
        state = await self.layout()
        mask = self.keys.partitions - 1
        groups: dict[int, list[int]] = {}
        for i, (_, post) in enumerate(views):
            groups.setdefault(post & mask, []).append(i)
        todo = list(groups.items())
        for _ in range(MAX_ADDRESS_ATTEMPTS):
            now_ms = await self._now_ms()
            window = now_ms // (self.dedup_ttl * 1000)
            with_v1 = state.v1_flags_live(now_ms)
            calls = [
                self._record_call(q, [views[i] for i in idx], window, batch_id, with_v1)
                for q, idx in todo
            ]
            replies = await self.redis.run_scripts(scripts.RECORD_VIEWS, [c[:2] for c in calls])
            stale: list[tuple[int, list[int]]] = []
            full: list[tuple[int, int, int]] = []  # partition, depth, address
            for (q, idx), call, reply in zip(todo, calls, replies, strict=True):
                status, server_window = reply[0], int(reply[1])
                if status == b"ok":
                    for i, flag in zip(idx, reply[2], strict=True):
                        flags[i] = flag == 49  # ord("1")
                    self._pending[q] = int(reply[3])
                    full += [(q, *call[2][int(index)]) for index in reply[4:]]
                elif status == b"stale":
                    stale.append((q, idx))
                    if server_window != window:
                        self._clock_offset_ms = None  # ask Redis for the time again
                # b"done": this replay batch was applied to the partition before
            if full:
                await self._split(full, window)
            if not stale:
                return
            await self._refresh_directories([q for q, _ in stale], window)
            todo = stale
        raise TransientError("view dedup: bucket directories kept changing; try again")

    def _record_call(
        self,
        partition: int,
        views: list[tuple[int, int]],
        window: int,
        batch_id: str,
        with_v1: bool,
    ) -> tuple[list[str], list[Any], dict[int, tuple[int, int]]]:
        """KEYS and ARGV of one partition's RECORD_VIEWS call, and for each bucket of this
        window it names (by KEYS index) its depth and address, to split it if it is full."""
        k = self.keys
        keys = [
            k.counts(partition),
            k.epoch(partition),
            k.replayed(partition),
            k.seen_directory(partition, window),
            k.seen_directory(partition, window - 1),
        ]
        index: dict[str, int] = {}
        buckets: dict[int, tuple[int, int]] = {}
        current = self.directories.get(partition, window)
        previous = self.directories.get(partition, window - 1)
        bits = k.partitions.bit_length() - 1
        legacy = self.legacy.keys
        header = _VIEW_HEADER.pack
        parts: list[bytes] = []
        for user, post in views:
            low = low_bits(user)
            depth = depth_in(current, low)
            address = low & ((1 << depth) - 1)
            name = k.seen_bucket(partition, window, address)
            bucket = index.get(name)
            if bucket is None:
                keys.append(name)
                bucket = index[name] = len(keys)  # Lua's KEYS count from 1
                buckets[bucket] = (depth, address)
            old_depth = depth_in(previous, low)
            name = k.seen_bucket(partition, window - 1, low & ((1 << old_depth) - 1))
            old = index.get(name)
            if old is None:
                keys.append(name)
                old = index[name] = len(keys)
            v1 = 0
            if with_v1:
                keys.append(legacy.user_view(user, post))
                v1 = len(keys)
            field = pack_pair(user, post, bits)
            digits = b"%d" % post
            parts += (
                header(low, depth, old_depth, bucket, old, v1, len(field), len(digits)),
                field,
                digits,
            )
        now = "" if self.clock is None else self.clock()
        args = [window, self.dedup_ttl * 1000, batch_id, now, b"".join(parts)]
        return keys, args, buckets

    async def _split(self, full: list[tuple[int, int, int]], window: int) -> None:
        """Split buckets that record calls filled past the cap; keep the new directories."""
        k = self.keys
        expire = (window + 2) * self.dedup_ttl * 1000
        calls = [
            (
                [
                    k.seen_directory(q, window),
                    k.seen_bucket(q, window, address),
                    k.seen_bucket(q, window, address | (1 << depth)),
                ],
                [depth, address, expire],
            )
            for q, depth, address in full
        ]
        replies = await self.redis.run_scripts(scripts.SPLIT_BUCKET, calls)
        for (q, _, _), directory in zip(full, replies, strict=True):
            self.directories.put(q, window, directory)

    async def _refresh_directories(self, partitions: list[int], window: int) -> None:
        k = self.keys
        commands = [
            ("GET", k.seen_directory(q, w)) for q in partitions for w in (window, window - 1)
        ]
        replies = await self.redis.pipeline(commands)
        it = iter(replies)
        for q in partitions:
            self.directories.put(q, window, next(it))
            self.directories.put(q, window - 1, next(it))
        self.directories.forget_before(window - 1)

    async def _now_ms(self) -> int:
        """Redis' clock, as estimated from ours: the scripts decide by Redis `TIME`."""
        if self.clock is not None:
            return self.clock()
        if self._clock_offset_ms is None:
            seconds, micros = await self.redis.execute("TIME")
            redis_ms = int(seconds) * 1000 + int(micros) // 1000
            self._clock_offset_ms = redis_ms - int(time.time() * 1000)
        return int(time.time() * 1000) + self._clock_offset_ms

    # -- syncing -----------------------------------------------------------------------------

    async def partitions_pending(self) -> list[int]:
        """Partitions with counters to sync, in order."""
        replies = await self.redis.pipeline(
            [("HLEN", self.keys.counts(q)) for q in range(self.keys.partitions)]
        )
        return [q for q, size in enumerate(replies) if size]

    async def take_batch(
        self, partition: int, batch_id: str, count: int
    ) -> tuple[int, dict[int, int]]:
        """Move up to `count` of a partition's counters into a batch: (taken, its contents)."""
        k = self.keys
        reply = await self.redis.run_script(
            scripts.MOVE_TO_BATCH,
            [
                k.counts(partition),
                k.batches(partition),
                k.batch(partition, batch_id),
                k.epoch(partition),
            ],
            [batch_id, count],
        )
        it = iter(reply[2:])
        return int(reply[0]), {int(post): int(views) for post, views in zip(it, it, strict=True)}

    async def in_flight_batches(self) -> list[BatchRef]:
        """Every batch moved and not yet forgotten: v1's first, then by partition."""
        refs: list[BatchRef] = []
        if (await self.layout()).v1_counters:
            refs += [(None, b) for b in await self.legacy.in_flight_batches()]
        replies = await self.redis.pipeline(
            [("SMEMBERS", self.keys.batches(q)) for q in range(self.keys.partitions)]
        )
        for q, members in enumerate(replies):
            refs += [(q, m.decode()) for m in sorted(members)]
        return refs

    async def batch_contents(self, ref: BatchRef) -> dict[int, int]:
        partition, batch_id = ref
        if partition is None:
            return await self.legacy.batch_contents(batch_id)
        raw = await self.redis.execute("HGETALL", self.keys.batch(partition, batch_id))
        return {int(post): int(views) for post, views in raw.items()}

    async def forget_batch(self, ref: BatchRef) -> None:
        """Delete an applied batch (idempotent)."""
        partition, batch_id = ref
        if partition is None:
            await self.legacy.forget_batch(batch_id)
            return
        k = self.keys
        await self.redis.pipeline(
            [("DEL", k.batch(partition, batch_id)), ("SREM", k.batches(partition), batch_id)],
            transaction=True,
        )

    # -- reading -----------------------------------------------------------------------------

    async def snapshot(self, post_id: int) -> PostSnapshot:
        """The post's counter, in-flight shares and replays, read from its one partition (and
        from v1's keys while a takeover has v1 counters left)."""
        k, q = self.keys, self.keys.partition_of(post_id)
        expected = self._known_batches.get(q, [])
        for _ in range(MAX_ADDRESS_ATTEMPTS):
            reply = await self.redis.run_script(
                scripts.SNAPSHOT_POST,
                [k.epoch(q), k.counts(q), k.replayed(q), k.batches(q)]
                + [k.batch(q, b) for b in expected],
                [post_id, *expected],
            )
            if reply[0] == b"ok":
                break
            expected = self._known_batches[q] = sorted(m.decode() for m in reply[1:])
        else:
            raise TransientError(f"post {post_id}: sync batches kept changing; try again")
        in_flight = {reply[i].decode(): int(reply[i + 1]) for i in range(4, len(reply), 2)}
        replayed = reply[3].decode().split()
        v1_epoch, counter = 0, int(reply[2])
        if (await self.layout()).v1_counters:
            old = await self.legacy.snapshot(post_id)
            v1_epoch, counter = old.epoch, counter + old.counter
            in_flight.update(old.in_flight)
            replayed += old.replayed
        return PostSnapshot((int(reply[1]), v1_epoch), counter, in_flight, replayed)

    async def epoch(self, post_id: int) -> tuple[int, int]:
        """The epochs a snapshot of this post depends on (see kaleido.views.totals)."""
        q = self.keys.partition_of(post_id)
        current = int(await self.redis.execute("GET", self.keys.epoch(q)) or 0)
        if (await self.layout()).v1_counters:
            return current, await self.legacy.epoch()
        return current, 0

    async def pending_size(self) -> int:
        return await pending_posts(self.redis, self.keys)


async def pending_posts(redis: RedisGateway, keys: KeyLayout) -> int:
    """Posts with views not yet moved into a sync batch: every partition's HLEN, plus v1's
    pending set during a takeover (0 otherwise); one round trip, and only reads."""
    commands = [("HLEN", keys.counts(q)) for q in range(keys.partitions)]
    replies = await redis.pipeline([*commands, ("SCARD", LegacyKeys(keys.prefix).pending)])
    return sum(int(r) for r in replies)
