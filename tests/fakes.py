"""In-memory implementations of the streams' typed interfaces, for unit tests on trio's clock.

- `FakeInboundStream` (`kaleido.streams.inbound.InboundStream`): one stream, one group, pending
  lists per consumer with delivery counts and idle times, a DLQ; Redis' rules for what each
  read returns. Errors are queued per method (`fail`), Redis can be down (`down`), the group
  can vanish (`drop_group`).
- `FakeLedger` (`kaleido.streams.ledger.EffectLedger`): recorded ids, atomic apply through the
  handler, a switch for PostgreSQL being down, the time of every probe.
- `FakeOutbound` (`kaleido.streams.outbound.OutboundStreams`): streams trimmed to `maxlen`.
- `RecordingHandler`: the real insights decoder; applying records the messages, and raises
  for chosen media ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import attrs
import trio

from kaleido.errors import NoGroup, PostgresUnavailable, RedisUnavailable
from kaleido.gateways import Transaction
from kaleido.messages import INSIGHTS_STREAM, Fields, IgnoredEntry, InsightResult, decode_insight
from kaleido.messages.dlq import Rejection, encode_dead_letter
from kaleido.replies import id_key
from kaleido.streams.handlers import Handler
from kaleido.streams.inbound import Claimed, Entry, GroupPosition
from kaleido.streams.outbound import OutboundEntry

M = TypeVar("M")


@attrs.define
class Pending:
    owner: str
    deliveries: int
    delivered_at: float


@attrs.define
class FakeInboundStream:
    consumer: str = "media-ai-consumer"
    group: str = "backend-group"
    entries: dict[str, dict[bytes, bytes]] = attrs.Factory(dict)  # id -> fields, in id order
    group_exists: bool = False
    last_delivered: str = "0-0"
    pending: dict[str, Pending] = attrs.Factory(dict)
    dead_letters: list[dict[bytes | str, bytes | str]] = attrs.Factory(list)
    acked: list[str] = attrs.Factory(list)
    groups_created: int = 0
    down: bool = False  # Redis unreachable: every call raises RedisUnavailable
    calls: dict[str, list[float]] = attrs.Factory(dict)  # method -> times it was called
    failed_at: list[float] = attrs.Factory(list)  # times of the calls that raised
    read_counts: list[int] = attrs.Factory(list)  # the count each read of new entries asked for
    _errors: dict[str, list[BaseException]] = attrs.Factory(dict)
    _next_ms: int = 1
    _added: trio.Event = attrs.Factory(trio.Event)

    # -- driving the fake ----------------------------------------------------------------

    def add(self, fields: Mapping[str, str]) -> str:
        """XADD: a new entry; returns its id."""
        entry_id = f"{self._next_ms}-0"
        self._next_ms += 1
        self.entries[entry_id] = {k.encode(): v.encode() for k, v in fields.items()}
        self._added.set()
        self._added = trio.Event()
        return entry_id

    def fail(self, method: str, *errors: BaseException) -> None:
        """The next calls of `method` raise `errors`, one each."""
        self._errors.setdefault(method, []).extend(errors)

    def drop_group(self) -> None:
        """Redis flushed: the group (and what it had pending) is gone."""
        self.group_exists = False
        self.pending.clear()
        self.last_delivered = "0-0"

    def deliver_to(self, consumer: str, count: int) -> list[str]:
        """Another consumer reads `count` new entries (and never acknowledges them)."""
        return [e.id for e in self._deliver_new(consumer, count)]

    def delete(self, entry_id: str) -> None:
        """XDEL: the entry goes, but stays in pending lists (read back with no fields)."""
        del self.entries[entry_id]

    @property
    def dlq(self) -> list[dict[str, str]]:
        """The dead letters as text."""
        return [{_text(k): _text(v) for k, v in letter.items()} for letter in self.dead_letters]

    # -- InboundStream -------------------------------------------------------------------

    def _enter(self, method: str, *, needs_group: bool = True) -> None:
        self.calls.setdefault(method, []).append(trio.current_time())
        queued = self._errors.get(method)
        if self.down or queued:
            self.failed_at.append(trio.current_time())
            raise queued.pop(0) if queued else RedisUnavailable("redis: connection refused")
        if needs_group and not self.group_exists:
            raise NoGroup("NOGROUP No such key or consumer group")

    async def create_group(self) -> bool:
        self._enter("create_group", needs_group=False)
        if self.group_exists:
            return False
        self.group_exists = True
        self.groups_created += 1
        return True

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        self._enter("read_new")
        self.read_counts.append(count)
        if not self._undelivered():
            with trio.move_on_after(block_ms / 1000):
                await self._added.wait()
            if not self.group_exists:  # flushed while blocked
                raise NoGroup("UNBLOCKED the stream key no longer exists")
        return self._deliver_new(self.consumer, count)

    async def read_pending(self, after: str, count: int) -> list[Entry]:
        self._enter("read_pending")
        ids = sorted(
            (i for i, p in self.pending.items() if p.owner == self.consumer),
            key=id_key,
        )
        ids = [i for i in ids if id_key(i) > id_key(after)][:count]
        for i in ids:
            self._touch(i, self.consumer)
        return [Entry(i, self.entries.get(i, {})) for i in ids]

    async def deliveries(self, entries: Sequence[Entry]) -> dict[str, int]:
        self._enter("deliveries")
        return {e.id: self.pending[e.id].deliveries for e in entries if e.id in self.pending}

    async def claim_stale(self, min_idle: float, cursor: str, count: int) -> Claimed:
        self._enter("claim_stale")
        now = trio.current_time()
        ids = sorted(
            (i for i, p in self.pending.items() if now - p.delivered_at >= min_idle),
            key=id_key,
        )
        ids = [i for i in ids if id_key(i) >= id_key(cursor)]
        page, rest = ids[:count], ids[count:]
        for i in page:
            self._touch(i, self.consumer)
        return Claimed(
            [Entry(i, self.entries.get(i, {})) for i in page], rest[0] if rest else "0-0"
        )

    async def dead_letter_and_ack(self, rejected: Sequence[Rejection], done: Sequence[str]) -> None:
        self._enter("dead_letter_and_ack", needs_group=False)
        for r in rejected:
            flat = encode_dead_letter(r, "2026-01-01T00:00:00.000000Z")
            self.dead_letters.append(dict(zip(flat[::2], flat[1::2], strict=True)))
        for entry_id in [*(r.entry_id for r in rejected), *done]:
            if self.pending.pop(entry_id, None) is not None:
                self.acked.append(entry_id)

    async def group_positions(self) -> list[GroupPosition]:
        self._enter("group_positions", needs_group=False)
        if not self.group_exists:
            return []
        oldest = min(self.pending, key=id_key) if self.pending else None
        return [GroupPosition(self.group, len(self.pending), oldest, self.last_delivered)]

    async def trim_below(self, min_id: str) -> int:
        self._enter("trim_below", needs_group=False)
        gone = [i for i in self.entries if id_key(i) < id_key(min_id)]
        for i in gone:
            del self.entries[i]
        return len(gone)

    # -- internals -----------------------------------------------------------------------

    def _undelivered(self) -> list[str]:
        return [i for i in self.entries if id_key(i) > id_key(self.last_delivered)]

    def _deliver_new(self, consumer: str, count: int) -> list[Entry]:
        ids = self._undelivered()[:count]
        for i in ids:
            self.pending[i] = Pending(consumer, 0, 0.0)
            self._touch(i, consumer)
        if ids:
            self.last_delivered = ids[-1]
        return [Entry(i, self.entries[i]) for i in ids]

    def _touch(self, entry_id: str, consumer: str) -> None:
        p = self.pending[entry_id]
        p.owner, p.deliveries, p.delivered_at = consumer, p.deliveries + 1, trio.current_time()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _NoTransaction:
    """What the fake ledger hands a handler: handlers used with it never touch SQL."""


@attrs.define
class FakeLedger:
    down: bool = False
    recorded: dict[tuple[str, str], float] = attrs.Factory(dict)  # (stream, id) -> time
    probes: list[float] = attrs.Factory(list)

    async def apply_once(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> list[tuple[str, M]]:
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")
        fresh = [item for item in batch if (stream_key, item[0]) not in self.recorded]
        if fresh:
            await handler.apply(cast(Transaction, _NoTransaction()), fresh)  # raises: no record
        now = trio.current_time()
        for entry_id, _ in batch:
            self.recorded.setdefault((stream_key, entry_id), now)
        return fresh

    async def probe(self) -> None:
        self.probes.append(trio.current_time())
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")

    async def prune(self, stream_key: str, older_than: float) -> int:
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")
        limit = trio.current_time() - older_than
        old = [k for k, t in self.recorded.items() if k[0] == stream_key and t < limit]
        for k in old:
            del self.recorded[k]
        return len(old)


@attrs.define
class RecordingHandler:
    """Insights entries, decoded for real; applying records them, or raises `failures[media]`."""

    failures: dict[int, Exception] = attrs.Factory(dict)
    applied: list[tuple[str, InsightResult]] = attrs.Factory(list)
    stream: str = INSIGHTS_STREAM

    def decode(self, fields: Fields) -> InsightResult | IgnoredEntry:
        return decode_insight(fields)

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, InsightResult]]) -> None:
        for _, message in messages:
            error = self.failures.get(message.media_id)
            if error is not None:
                raise error
        self.applied += messages

    def media(self) -> list[int]:
        return [m.media_id for _, m in self.applied]


@attrs.define
class FakeOutbound:
    streams: dict[str, list[tuple[str, dict[str, str]]]] = attrs.Factory(dict)
    maxlens: list[int] = attrs.Factory(list)
    round_trips: int = 0
    _errors: list[BaseException] = attrs.Factory(list)
    _next_ms: int = 1

    def fail(self, *errors: BaseException) -> None:
        self._errors.extend(errors)

    async def append(self, entries: Sequence[OutboundEntry]) -> list[str]:
        self.round_trips += 1
        if self._errors:
            raise self._errors.pop(0)
        ids = []
        for entry in entries:
            entry_id = f"{self._next_ms}-0"
            self._next_ms += 1
            stream = self.streams.setdefault(entry.key, [])
            stream.append((entry_id, dict(entry.fields)))
            del stream[: max(0, len(stream) - entry.maxlen)]
            self.maxlens.append(entry.maxlen)
            ids.append(entry_id)
        return ids


async def until(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    """Wait (on the test's clock) until `predicate` holds; TooSlowError after `timeout`."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - the fakes keep no events to wait on
            await trio.sleep(0.01)


def insight(media_id: int | str, **extra: Any) -> dict[str, str]:
    """A tagging result for `media_id`, as the ML service writes it."""
    fields = {"mediaId": str(media_id), "postId": "1", "service": "tagging", "tags": '["a"]'}
    fields.update({k: str(v) for k, v in extra.items()})
    return fields
