"""In-memory implementations of the streams' typed interfaces, for unit tests on trio's clock.

- `FakeInboundStream` (`kaleido.streams.inbound.InboundStream`): one stream, one group, pending
  lists per consumer with delivery counts and idle times, a DLQ; Redis' rules for what each
  read returns. Errors are queued per method (`fail`), Redis can be down (`down`), the group
  can vanish (`drop_group`).
- `FakeLedger` (`kaleido.streams.ledger.EffectLedger`): recorded ids, atomic apply through the
  handler, a switch for PostgreSQL being down, the time of every probe.
- `FakeOutbox` (`kaleido.outbox.OutboxStore`): committed rows; a relay takes them, publishes,
  deletes them, or deletes nothing when its publish raised.
- `FakeAnnouncer` (`kaleido.outbox.Announcer`): streams and the rows' marks; Redis can be down,
  and a reply can be lost after the entries were added (the ambiguous case).
- `RecordingHandler`: the real insights decoder; applying records the messages, and raises
  for chosen media ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import trio

from kaleido.errors import NoGroup, PostgresUnavailable, RedisUnavailable
from kaleido.gateways import Transaction
from kaleido.messages import INSIGHTS_STREAM, Fields, IgnoredEntry, InsightResult, decode_insight
from kaleido.messages.dlq import Rejection, encode_dead_letter
from kaleido.outbox import Announcement, Backlog
from kaleido.outbox.publish import Announcer
from kaleido.outbox.store import OutboxStore, Publish
from kaleido.replies import id_key
from kaleido.streams.handlers import NOTHING_STALE, Handler, Stale
from kaleido.streams.inbound import Claimed, Entry, GroupPosition, InboundStream
from kaleido.streams.ledger import Applied, EffectLedger

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

    async def reread_pending(self, after: str, count: int) -> tuple[list[Entry], dict[str, int]]:
        self._enter("reread_pending")
        ids = sorted(
            (i for i, p in self.pending.items() if p.owner == self.consumer),
            key=id_key,
        )
        ids = [i for i in ids if id_key(i) > id_key(after)][:count]
        entries = [Entry(i, self.entries.get(i, {})) for i in ids]
        return entries, {i: self.pending[i].deliveries for i in ids}

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
        for r in rejected:  # copied only by the call that acknowledges it, as the script does
            if self.pending.pop(r.entry_id, None) is not None:
                self.acked.append(r.entry_id)
                flat = encode_dead_letter(r, "2026-01-01T00:00:00.000000Z")
                self.dead_letters.append(dict(zip(flat[::2], flat[1::2], strict=True)))
        for entry_id in done:
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
    records: dict[tuple[str, str], float] = attrs.Factory(dict)  # (stream, id) -> time
    probes: list[float] = attrs.Factory(list)
    refused_at: list[float] = attrs.Factory(list)  # when a call other than `probe` failed
    lost_commit_replies: int = 0  # this many commits succeed, then raise as if cut off

    async def apply_once(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> Applied[M]:
        self._refuse_when_down()
        fresh = [item for item in batch if (stream_key, item[0]) not in self.records]
        stale = NOTHING_STALE
        if fresh:  # raises: nothing recorded
            stale = await handler.apply(cast(Transaction, _NoTransaction()), fresh)
        now = trio.current_time()
        for entry_id, _ in batch:
            self.records.setdefault((stream_key, entry_id), now)
        if self.lost_commit_replies:
            self.lost_commit_replies -= 1
            raise PostgresUnavailable("postgres: connection reset (the commit's reply was lost)")
        return Applied(fresh, stale)

    async def recorded(self, stream_key: str, entry_ids: Sequence[str]) -> set[str]:
        self._refuse_when_down()
        return {i for i in entry_ids if (stream_key, i) in self.records}

    def _refuse_when_down(self) -> None:
        if self.down:
            self.refused_at.append(trio.current_time())
            raise PostgresUnavailable("postgres: connection refused")

    async def probe(self) -> None:
        self.probes.append(trio.current_time())
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")

    async def prune(self, stream_key: str, older_than: float) -> int:
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")
        limit = trio.current_time() - older_than
        old = [k for k, t in self.records.items() if k[0] == stream_key and t < limit]
        for k in old:
            del self.records[k]
        return len(old)


@attrs.define
class RecordingHandler:
    """Insights entries, decoded for real; applying records them, or raises `failures[media]`."""

    failures: dict[int, Exception] = attrs.Factory(dict)
    applied: list[tuple[str, InsightResult]] = attrs.Factory(list)
    stream: str = INSIGHTS_STREAM

    def decode(self, fields: Fields) -> InsightResult | IgnoredEntry:
        return decode_insight(fields)

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, InsightResult]]) -> Stale:
        for _, message in messages:
            error = self.failures.get(message.media_id)
            if error is not None:
                raise error
        self.applied += messages
        return NOTHING_STALE

    def media(self) -> list[int]:
        return [m.media_id for _, m in self.applied]


@attrs.define
class FakeOutbox:
    """Committed outbox rows, in id order; `down` makes every call raise."""

    rows: dict[int, Announcement] = attrs.Factory(dict)
    down: bool = False
    transactions: int = 0
    _next_id: int = 1

    def commit(self, stream: str, fields: Mapping[str, str] | None) -> int:
        """A transaction commits an announcement (None fields: a superseded claim)."""
        outbox_id = self._next_id
        self._next_id += 1
        row_fields = None if fields is None else tuple(fields.items())
        self.rows[outbox_id] = Announcement(outbox_id, stream, row_fields)
        return outbox_id

    async def relay(self, limit: int, publish: Publish) -> int:
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")
        self.transactions += 1
        taken = [self.rows[i] for i in sorted(self.rows)[:limit]]
        if taken:
            await publish(taken)  # raises: nothing deleted
            for row in taken:
                del self.rows[row.outbox_id]
        return len(taken)

    async def backlog(self) -> Backlog:
        if self.down:
            raise PostgresUnavailable("postgres: connection refused")
        return Backlog(len(self.rows), min(self.rows, default=None), 0.0)


@attrs.define
class FakeAnnouncer:
    """Streams (stream → [(outbox id, fields)]) and marks, as `PUBLISH_ONCE` keeps them."""

    streams: dict[str, list[tuple[int, dict[str, str]]]] = attrs.Factory(dict)
    marks: set[int] = attrs.Factory(set)
    down: bool = False
    calls: int = 0
    lose_replies: int = 0  # this many publishes add their entries, then raise as if cut off

    async def publish(self, announcements: Sequence[Announcement]) -> int:
        self.calls += 1
        if self.down:
            raise RedisUnavailable("redis: connection refused")
        added = 0
        for a in announcements:
            if a.fields is None or a.outbox_id in self.marks:
                continue
            self.streams.setdefault(a.stream, []).append((a.outbox_id, dict(a.fields)))
            self.marks.add(a.outbox_id)
            added += 1
        if self.lose_replies:
            self.lose_replies -= 1
            raise RedisUnavailable("redis: connection reset by peer (reply lost)")
        return added

    async def forget(self, announcements: Sequence[Announcement]) -> None:
        if self.down:
            raise RedisUnavailable("redis: connection refused")
        self.marks -= {a.outbox_id for a in announcements}

    async def sweep(self, retention: float = 0.0) -> int:
        return 0


if TYPE_CHECKING:
    # Each fake against the interface it stands in for: mypy (which checks tests/ too) fails
    # here when a fake and its interface part ways. Never run.
    def _stand_ins(
        stream: FakeInboundStream,
        ledger: FakeLedger,
        handler: RecordingHandler,
        outbox: FakeOutbox,
        announcer: FakeAnnouncer,
    ) -> tuple[InboundStream, EffectLedger, Handler[InsightResult], OutboxStore, Announcer]:
        return stream, ledger, handler, outbox, announcer


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
