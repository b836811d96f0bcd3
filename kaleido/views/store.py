"""The Redis side of view counting (layout v2): record views, move counters into sync batches,
take a post's snapshot. Every call touches one partition; calls for several are pipelined.

A batch in flight is named by a `BatchRef`: its partition and id, or partition None for a
batch of the v1 layout being drained during a takeover (`kaleido.views.legacy`).
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from kaleido.errors import TransientError
from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.views import scripts
from kaleido.views.dedup import (
    GROUP_HEADER,
    MAX_DEPTH,
    VIEW_HEADER,
    Directories,
    depth_in,
    low_bits,
    pack_pair,
)
from kaleido.views.layout import LayoutState, open_layout, read_state
from kaleido.views.legacy import LegacyKeys, LegacyViews
from kaleido.views.moves import Moved, parse_move

# A call finds the caller's directory copy stale only when another process split a bucket
# since it was read; a few refreshes always settle it.
MAX_ADDRESS_ATTEMPTS = 8

BatchRef = tuple[int | None, str]

_GROUP_HEADER = struct.Struct(GROUP_HEADER)
_VIEW_HEADER = struct.Struct(VIEW_HEADER)


@functools.cache
def _templates(prefix: str) -> tuple[bytes, bytes]:
    """%-templates of KeyLayout.seen_bucket and LegacyKeys.user_view, as bytes."""
    bucket = KeyLayout(prefix).seen_bucket(0, 0, 0).replace("{0}", "{%d}")
    bucket = bucket.removesuffix(":0:0") + ":%d:%d"
    return bucket.encode(), LegacyKeys(prefix).user_view(0, 0).replace(":0:0", ":%d:%d").encode()


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
    # Buckets a record call reported nearly full: (window, partition, depth, address).
    _nearly_full: set[tuple[int, int, int, int]] = attrs.field(factory=set, init=False)

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
        # On a cluster a call's keys must share a slot: one call per partition. A single Redis
        # takes the whole batch in one call.
        if self.redis.is_cluster:
            todo = [[group] for group in groups.items()]
        else:
            todo = [list(groups.items())]
        for _ in range(MAX_ADDRESS_ATTEMPTS):
            now_ms = await self._now_ms()
            window = now_ms // (self.dedup_ttl * 1000)
            with_v1 = state.v1_flags_live(now_ms)
            calls = [self._record_call(call, views, window, batch_id, with_v1) for call in todo]
            replies = await self.redis.run_scripts(scripts.RECORD_VIEWS, [c[:2] for c in calls])
            stale: list[list[tuple[int, list[int]]]] = []
            for call, (_, _, buckets), reply in zip(todo, calls, replies, strict=True):
                if reply[0] == b"stale":
                    stale.append(call)
                    if int(reply[1]) != window:
                        self._clock_offset_ms = None  # ask Redis for the time again
                    continue
                positions = [i for _, idx in call for i in idx]
                for i, flag in zip(positions, reply[2], strict=True):
                    flags[i] = flag == 49  # ord("1")
                for (q, _), pending in zip(call, reply[3].split(), strict=True):
                    self._pending[q] = int(pending)
                new_directories = int(reply[4])
                changed = iter(reply[5 : 5 + 2 * new_directories])
                for group, directory in zip(changed, changed, strict=True):
                    self.directories.put(call[int(group) - 1][0], window, directory)
                for index in reply[5 + 2 * new_directories :]:
                    self._nearly_full.add((window, *buckets[int(index)]))
            if not stale:
                return
            await self._refresh_directories([q for call in stale for q, _ in call], window)
            todo = stale
        raise TransientError("view dedup: bucket directories kept changing; try again")

    def _record_call(
        self,
        groups: list[tuple[int, list[int]]],
        views: Sequence[tuple[int, int]],
        window: int,
        batch_id: str,
        with_v1: bool,
    ) -> tuple[list[str | bytes], list[Any], dict[int, tuple[int, int, int]]]:
        """KEYS and ARGV of one RECORD_VIEWS call for these partitions' views, and for each
        bucket of this window it names (by KEYS index) its partition, depth and address."""
        k = self.keys
        keys: list[str | bytes] = []
        index: dict[str | bytes, int] = {}

        def ref(name: str | bytes) -> int:
            position = index.get(name)
            if position is None:
                keys.append(name)
                position = index[name] = len(keys)  # Lua's KEYS count from 1
            return position

        buckets: dict[int, tuple[int, int, int]] = {}
        others: dict[int, int] = {}  # bucket's KEYS index → its other half's (0: not named)
        nearly_full = self._nearly_full
        bits = k.partitions.bit_length() - 1
        # Keys as bytes from templates: the inner loop runs once per view.
        bucket_name, v1_name = _templates(k.prefix)
        group_header, view_header = _GROUP_HEADER.pack, _VIEW_HEADER.pack
        parts: list[bytes] = []
        for partition, idx in groups:
            parts.append(
                group_header(
                    ref(k.counts(partition)),
                    ref(k.epoch(partition)),
                    ref(k.replayed(partition)),
                    ref(k.seen_directory(partition, window)),
                    ref(k.seen_directory(partition, window - 1)),
                    len(idx),
                )
            )
            current = self.directories.get(partition, window)
            previous = self.directories.get(partition, window - 1)
            # KEYS index by bucket address, for this window's buckets and the previous one's
            by_address: dict[int, int] = {}
            old_by_address: dict[int, int] = {}
            for i in idx:
                user, post = views[i]
                low = low_bits(user)
                depth = depth_in(current, low)
                address = low & ((1 << depth) - 1)
                bucket = by_address.get(address)
                if bucket is None:
                    bucket = by_address[address] = ref(bucket_name % (partition, window, address))
                    buckets[bucket] = (partition, depth, address)
                    other = 0  # name the other half of a nearly full bucket: it may split
                    if depth < MAX_DEPTH and (window, partition, depth, address) in nearly_full:
                        other = ref(bucket_name % (partition, window, address | (1 << depth)))
                    others[bucket] = other
                old_depth = depth_in(previous, low)
                old_address = low & ((1 << old_depth) - 1)
                old = old_by_address.get(old_address)
                if old is None:
                    old = old_by_address[old_address] = ref(
                        bucket_name % (partition, window - 1, old_address)
                    )
                v1 = 0
                if with_v1:
                    keys.append(v1_name % (user, post))
                    v1 = len(keys)
                field = pack_pair(user, post, bits)
                digits = b"%d" % post
                parts += (
                    view_header(
                        low,
                        depth,
                        old_depth,
                        bucket,
                        others[bucket],
                        old,
                        v1,
                        len(field),
                        len(digits),
                    ),
                    field,
                    digits,
                )
        now = "" if self.clock is None else self.clock()
        args = [window, self.dedup_ttl * 1000, batch_id, now, b"".join(parts)]
        return keys, args, buckets

    async def _refresh_directories(self, partitions: list[int], window: int) -> None:
        """Read the directories of these partitions (this window and the previous one)."""
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
        self._nearly_full = {b for b in self._nearly_full if b[0] >= window}

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

    async def take_batch(self, partition: int, batch_id: str, count: int) -> Moved:
        """Move up to `count` of a partition's counters into the batch `batch_id`.

        Ambiguous call: a reply lost after the move ran is retried by redis-py with the same
        id, which answers the batch made the first time (`again`), or `stale` if it was
        applied and forgotten since; nothing is moved twice (kaleido.views.moves)."""
        k = self.keys
        reply = await self.redis.run_script(
            scripts.MOVE_TO_BATCH,
            [
                k.counts(partition),
                k.batches(partition),
                k.batch(partition, batch_id),
                k.epoch(partition),
                k.moved(partition),
            ],
            [batch_id, count],
        )
        return parse_move(reply)

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
        """Delete an applied batch (idempotent: run again after a lost reply, it finds nothing
        to delete; a batch left by a reply lost before it ran is finished by the next sync)."""
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

    async def mark_synced(self, at: float) -> None:
        await mark_synced(self.redis, self.keys, at)


async def mark_synced(redis: RedisGateway, keys: KeyLayout, at: float) -> None:
    """Record a successful sync where every process (and machine) sees it."""
    await redis.execute("SET", keys.synced_at, repr(at))


async def last_synced(redis: RedisGateway, keys: KeyLayout) -> float | None:
    """When some process last synced successfully; None if never (or unknown)."""
    value = await redis.execute("GET", keys.synced_at)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def pending_posts(redis: RedisGateway, keys: KeyLayout) -> int:
    """Posts with views not yet moved into a sync batch: every partition's HLEN, plus v1's
    pending set during a takeover (0 otherwise); one round trip, and only reads."""
    commands = [("HLEN", keys.counts(q)) for q in range(keys.partitions)]
    replies = await redis.pipeline([*commands, ("SCARD", LegacyKeys(keys.prefix).pending)])
    return sum(int(r) for r in replies)
