"""The stream consumer driven with in-memory fakes on trio's autojump clock: no servers.

What the integration tests check against real Redis and PostgreSQL, here with every failure
placed exactly where it is wanted, and the retry timings observed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from kaleido.errors import PostgresQueryError, PostgresUnavailable, RedisUnavailable
from kaleido.messages import (
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    ImageCaptioning,
    ImageEmbedding,
    InsightResult,
    Moderation,
    SceneRecognition,
    Tagging,
)
from kaleido.metrics import Metrics
from kaleido.streams import FaceDetectionHandler, FaceRecognitionHandler, InsightsHandler
from kaleido.streams.consumer import PG_PROBE_CAP, RETRY_BASE, RETRY_CAP, StreamConsumer
from kaleido.streams.inbound import Entry
from kaleido.streams.ledger import one_statement
from kaleido.streams.read_size import FIRST_READ, READ_BUDGET, ReadSize

from .fakes import FakeInboundStream, FakeLedger, RecordingHandler, insight, until

KEY = "test:ml-insights-results"


def consumer(
    inbound: FakeInboundStream,
    ledger: FakeLedger,
    handler: RecordingHandler,
    stopping: trio.Event,
    **options: Any,
) -> StreamConsumer[Any]:
    options.setdefault("block_ms", 1000)
    return StreamConsumer(
        inbound, ledger, handler, inbound.consumer, KEY, stopping, Metrics(), **options
    )


@asynccontextmanager
async def running(
    inbound: FakeInboundStream,
    ledger: FakeLedger,
    handler: RecordingHandler,
    **options: Any,
) -> AsyncIterator[StreamConsumer[Any]]:
    stopping = trio.Event()
    actor = consumer(inbound, ledger, handler, stopping, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor
        stopping.set()


async def test_applied_entries_are_acknowledged(autojump_clock: trio.abc.Clock) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    ids = [inbound.add(insight(m)) for m in (1, 2, 3)]
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: len(inbound.acked) == 3)
        later = inbound.add(insight(4))
        await until(lambda: later in inbound.acked)
    assert handler.media() == [1, 2, 3, 4]
    assert inbound.acked == [*ids, later]
    assert not inbound.pending and not inbound.dead_letters
    assert {k for k in ledger.records} == {(KEY, i) for i in [*ids, later]}
    assert actor.stats.applied == 4 and actor.stats.dead_lettered == 0
    assert inbound.groups_created == 1


async def test_a_poison_entry_is_dead_lettered_at_once_with_field_and_reason(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    good = inbound.add(insight(1))
    bad = inbound.add(insight("abc", correlationId="corr-9"))
    after = inbound.add(insight(3))
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: len(inbound.acked) == 3)
    assert handler.media() == [1, 3]
    (letter,) = inbound.dlq
    assert letter["errorType"] == "DecodeError"
    assert letter["error"] == "mediaId: expected a positive 64-bit integer, got 'abc'"
    assert letter["originalId"] == bad and letter["deliveries"] == "1"
    assert letter["mediaId"] == "abc" and letter["correlationId"] == "corr-9"  # the original
    assert inbound.pending == {} and set(inbound.acked) == {good, bad, after}
    assert actor.stats.dead_lettered == 1 and actor.stats.applied == 2
    assert (KEY, bad) not in ledger.records


async def test_a_handler_error_dead_letters_only_that_entry(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger = FakeInboundStream(), FakeLedger()
    handler = RecordingHandler(failures={2: RuntimeError("boom")})
    ids = [inbound.add(insight(m)) for m in (1, 2, 3)]
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: len(inbound.acked) == 3)
    assert handler.media() == [1, 3]  # the batch failed whole, then went entry by entry
    (letter,) = inbound.dlq
    assert (letter["errorType"], letter["error"], letter["originalId"]) == (
        "RuntimeError",
        "boom",
        ids[1],
    )
    assert actor.stats.dead_lettered == 1 and actor.stats.applied == 2


async def test_a_rejected_statement_is_dead_lettered_with_the_reason(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger = FakeInboundStream(), FakeLedger()
    rejected = PostgresQueryError("value too long", sqlstate="22001")
    handler = RecordingHandler(failures={7: rejected})
    inbound.add(insight(7))
    async with running(inbound, ledger, handler):
        await until(lambda: len(inbound.acked) == 1)
    (letter,) = inbound.dlq
    assert letter["errorType"] == "PostgresQueryError"
    assert "value too long" in letter["error"]
    assert ledger.probes == []  # a rejected statement is not an outage


async def test_failures_are_retried_with_backoff_then_dead_lettered_after_max_deliveries(
    autojump_clock: trio.abc.Clock,
) -> None:
    """PostgreSQL answers the probe but keeps failing on one entry: it is retried (its
    delivery count grows), holds back only itself, and past max_deliveries goes to the DLQ."""
    inbound, ledger = FakeInboundStream(), FakeLedger()
    timeout = PostgresUnavailable("postgres: canceling statement due to timeout", statement=True)
    handler = RecordingHandler(failures={5: timeout})
    ids = [inbound.add(insight(m)) for m in (4, 5, 6)]
    async with running(inbound, ledger, handler, max_deliveries=3) as actor:
        await until(lambda: len(inbound.acked) == 3)
        later = inbound.add(insight(8))
        await until(lambda: later in inbound.acked)
    assert handler.media() == [4, 6, 8]
    (letter,) = inbound.dlq
    assert letter["originalId"] == ids[1]
    assert letter["errorType"] == "MaxDeliveriesExceeded"
    assert letter["error"] == "delivered 4 times, over max_deliveries=3"
    assert letter["deliveries"] == "4"
    assert actor.stats.retried >= 3
    # Each retry waited for a probe first: one per failure, RETRY_BASE after it.
    reads = inbound.calls["read_pending"]
    assert len(ledger.probes) >= 3
    for probe in ledger.probes[-3:]:
        assert any(abs(read - probe) < 1e-9 for read in reads)


async def test_an_entry_applied_whose_commit_replies_were_lost_is_acknowledged_not_dead_lettered(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Its commit went through, but every reply was lost until it was delivered past
    max_deliveries: it is acknowledged (its effect stands), not dead-lettered."""
    inbound, ledger, handler = (
        FakeInboundStream(),
        FakeLedger(lost_commit_replies=10),
        RecordingHandler(),
    )
    entry = inbound.add(insight(5))
    async with running(inbound, ledger, handler, max_deliveries=3) as actor:
        await until(lambda: entry in inbound.acked)
    assert inbound.dlq == [] and handler.media() == [5]
    assert actor.stats.duplicates == 1


async def test_a_stop_does_not_wait_for_a_blocked_read(autojump_clock: trio.abc.Clock) -> None:
    """A consumer waiting on a quiet stream stops at once, not when its read times out; an
    entry arriving later is left for the next start."""
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    async with running(inbound, ledger, handler, block_ms=60_000):
        await until(lambda: len(inbound.calls.get("read_new", ())) == 1)
        stopped_at = trio.current_time()
    assert trio.current_time() - stopped_at < 0.1
    late = inbound.add(insight(1))
    assert handler.media() == [] and late not in inbound.acked and not inbound.pending


async def test_postgres_down_probes_with_capped_backoff_and_loses_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    first = inbound.add(insight(1))
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: first in inbound.acked)
        ledger.down = True
        ids = [inbound.add(insight(m)) for m in (2, 3)]
        await trio.sleep(10)
        assert handler.media() == [1] and inbound.acked == [first]
        assert set(inbound.pending) == set(ids)  # kept, not dead-lettered
        assert {inbound.pending[i].deliveries for i in ids} == {1}  # and not burnt by retries
        ledger.down = False
        await until(lambda: len(inbound.acked) == 3)
    assert handler.media() == [1, 2, 3] and inbound.dlq == []
    gaps = [b - a for a, b in itertools.pairwise(ledger.probes)]
    assert gaps[:3] == pytest.approx([0.2, 0.4, 0.8])  # doubling from RETRY_BASE
    assert max(gaps) == pytest.approx(PG_PROBE_CAP)  # then capped
    assert ledger.probes[0] - ledger.refused_at[0] == pytest.approx(RETRY_BASE)
    assert actor.stats.postgres_outages == 1 and actor.stats.retried == 2


async def test_redis_errors_are_retried_with_backoff_without_crashing(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    inbound.add(insight(1))
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: len(inbound.acked) == 1)
        inbound.down = True
        await until(lambda: actor.stats.redis_errors == 9)
        inbound.down = False
        later = inbound.add(insight(2))
        await until(lambda: later in inbound.acked)
    assert handler.media() == [1, 2]
    assert actor.stats.dead_lettered == 0
    # Each attempt after a failure waits twice as long as the one before, up to RETRY_CAP;
    # the first one after Redis is back too (the pause follows the last failure).
    attempts = [*inbound.failed_at, inbound.calls["reread_pending"][-1]]  # quietly: an outage
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, RETRY_CAP, RETRY_CAP, RETRY_CAP])


async def test_one_queued_redis_error_is_retried_after_the_base_delay(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    inbound.fail("read_new", RedisUnavailable("redis: connection reset"))
    first = inbound.add(insight(1))
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: first in inbound.acked)
    failed, retried = inbound.calls["read_new"][:2]
    assert retried - failed == pytest.approx(RETRY_BASE)
    assert actor.stats.redis_errors == 1 and handler.media() == [1]


async def test_a_failed_acknowledgement_never_applies_twice(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    inbound.fail("dead_letter_and_ack", RedisUnavailable("redis: connection reset"))
    ids = [inbound.add(insight(m)) for m in (1, 2)]
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: len(inbound.acked) == 2)
    assert handler.media() == [1, 2]  # committed once; the redelivery was a duplicate
    assert inbound.acked == ids
    assert actor.stats.duplicates == 2 and actor.stats.redis_errors == 1


async def test_stale_pending_entries_of_a_dead_consumer_are_claimed(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    for m in (1, 2, 3):
        inbound.add(insight(m))
    inbound.group_exists = True
    orphans = inbound.deliver_to("media-ai-consumer-dead", 2)
    async with running(inbound, ledger, handler, min_idle=60, reclaim_interval=30) as actor:
        await until(lambda: len(inbound.acked) == 1)  # the third, read as new
        await trio.sleep(50)
        assert handler.media() == [3]  # idle 50 s: not yet taken over
        await until(lambda: len(inbound.acked) == 3)
        claimed_at = trio.current_time()
    assert 60 <= claimed_at <= 62
    assert handler.media() == [3, 1, 2]
    assert set(inbound.acked) >= set(orphans)
    assert actor.stats.reclaimed == 2


async def test_a_missing_group_is_recreated(autojump_clock: trio.abc.Clock) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    first = inbound.add(insight(1))
    async with running(inbound, ledger, handler) as actor:
        await until(lambda: first in inbound.acked)
        inbound.drop_group()  # Redis flushed, the entry survived (as from a persisted stream)
        await until(lambda: inbound.groups_created == 2)
        later = inbound.add(insight(2))
        await until(lambda: later in inbound.acked)
    assert actor.stats.nogroup >= 1
    assert handler.media() == [1, 2]  # the first entry, delivered again, was a duplicate
    assert actor.stats.duplicates == 1


async def test_an_entry_deleted_while_pending_is_just_acknowledged(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    inbound.group_exists = True
    gone = inbound.add(insight(1))
    inbound.deliver_to(inbound.consumer, 1)  # ours, from before a restart
    inbound.delete(gone)
    async with running(inbound, ledger, handler):
        await until(lambda: gone in inbound.acked)
    assert handler.applied == [] and inbound.dlq == []


async def test_trim_keeps_what_is_pending_or_undelivered(autojump_clock: trio.abc.Clock) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    ids = [inbound.add(insight(m)) for m in range(1, 7)]
    inbound.group_exists = True
    inbound.deliver_to("ghost", 4)
    await inbound.dead_letter_and_ack([], [ids[0], ids[2]])
    actor = consumer(inbound, ledger, handler, trio.Event())
    assert await actor.trim() == 1  # ids[1] is the oldest pending
    assert list(inbound.entries) == ids[1:]
    await inbound.dead_letter_and_ack([], [ids[1], ids[3]])
    assert await actor.trim() == 2  # below the last delivered, ids[3]
    assert list(inbound.entries) == ids[3:]
    assert actor.stats.trimmed == 3


async def test_prune_forgets_only_old_records(autojump_clock: trio.abc.Clock) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    ledger.records[(KEY, "1-0")] = 0.0
    await trio.sleep(100)
    ledger.records[(KEY, "2-0")] = trio.current_time()
    ledger.records[("other", "1-0")] = 0.0
    actor = consumer(inbound, ledger, handler, trio.Event(), retention=50)
    assert await actor.prune() == 1
    assert set(ledger.records) == {(KEY, "2-0"), ("other", "1-0")}


def test_read_size_starts_small_grows_and_shrinks_to_the_budget() -> None:
    size = ReadSize(512, budget=1000)
    assert size.count == FIRST_READ
    small = [Entry(f"{i}-0", {b"k": b"x" * 8}) for i in range(4)]  # 9 bytes each
    size.saw(small)
    assert size.count == 2 * FIRST_READ  # at most twofold per read
    for _ in range(10):
        size.saw(small)
    assert size.count == 111  # 1000 // 9: the budget, not the ceiling of 512
    size.saw([Entry("9-0", {b"k": b"x" * 499})])
    assert size.count == 2  # at once
    size.saw([Entry("10-0", {b"k": b"x" * 5000})])
    assert size.count == 1  # never below one
    size.saw([])
    assert size.count == 1  # an empty read says nothing about sizes
    assert size.at_most(256) == 1 and ReadSize(512).at_most(4) == 4


async def test_reads_of_large_entries_stay_within_the_byte_budget(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Entries near the 2 MiB cap: every read after the first asks for what the budget holds,
    while ordinary entries are read up to two batches at a time."""
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    large = 2 * 1024 * 1024 - 1024
    ids = [inbound.add({**insight(m), "pad": "x" * large}) for m in range(1, 41)]
    async with running(inbound, ledger, handler):
        await until(lambda: len(inbound.acked) == len(ids))
        large_reads = len(inbound.read_counts)
        small = [inbound.add(insight(m)) for m in range(100, 2100)]
        await until(lambda: len(inbound.acked) == len(ids) + len(small))
    first, *rest = inbound.read_counts[:large_reads]
    assert first == FIRST_READ
    assert all(count * large <= READ_BUDGET for count in rest)
    assert max(inbound.read_counts[large_reads:]) == 2 * 256  # back to two batches


async def test_shutdown_is_prompt_while_blocked(autojump_clock: trio.abc.Clock) -> None:
    inbound, ledger, handler = FakeInboundStream(), FakeLedger(), RecordingHandler()
    stopping = trio.Event()
    actor = consumer(inbound, ledger, handler, stopping, block_ms=1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await trio.sleep(5)
        stopping.set()
        stopped_at = trio.current_time()
    assert trio.current_time() - stopped_at <= 1.0


def _sample_batches() -> list[tuple[Any, list[tuple[str, Any]]]]:
    """A batch per handler touching every kind of effect it has."""
    common: dict[str, Any] = {"media_id": 11, "post_id": 12, "correlation_id": "c-1"}
    insights = [
        InsightResult(payload=Moderation(is_safe=False, confidence=0.9), **common),
        InsightResult(payload=Tagging(tags=("dog",)), **common),
        InsightResult(payload=SceneRecognition(scenes=("park",)), **common),
        InsightResult(payload=ImageCaptioning(caption="a dog"), **common),
        InsightResult(payload=ImageEmbedding(embedding=(0.5,) * 4), **common),
    ]
    face = DetectedFace(FACE_ID, (1, 2, 3, 4), (0.1, 0.2), 0.9)
    detection = FaceDetectionResult(faces_detected=1, faces=(face,), **common)
    recognition = FaceRecognitionResult(
        face_id=FACE_ID, suggested_user_id=5, confidence=0.8, matched_username="x", **common
    )
    return [
        (InsightsHandler(embedding_dim=4), [(f"{i}-0", m) for i, m in enumerate(insights, 1)]),
        (FaceDetectionHandler(embedding_dim=4), [("1-0", detection)]),
        (FaceRecognitionHandler(), [("1-0", recognition)]),
    ]


FACE_ID = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"


@pytest.mark.parametrize(("handler", "batch"), _sample_batches())
def test_the_one_statement_renumbers_every_handlers_placeholders(handler: Any, batch: Any) -> None:
    """The ledger joins the handlers' statements by renumbering `$n`: that is exact only if
    each statement uses exactly $1..$count and no `$` appears elsewhere in its text."""
    statements = handler.statements(batch)
    assert statements
    for sql, args in statements:
        used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert used == set(range(1, len(args) + 1)), sql
        assert sql.count("$") == len(re.findall(r"\$\d+", sql)), sql
    joined = one_statement(tuple((sql, len(args)) for sql, args in statements))
    total = 2 + sum(len(args) for _, args in statements)
    assert {int(n) for n in re.findall(r"\$(\d+)", joined)} == set(range(1, total + 1))


async def test_outages_do_not_bring_a_good_entry_closer_to_the_dlq(
    autojump_clock: trio.abc.Clock,
) -> None:
    """PostgreSQL goes down under one entry more often than max_deliveries: the re-reads after
    each outage do not count as deliveries, and the entry is applied, not dead-lettered."""
    inbound, ledger = FakeInboundStream(), FakeLedger()
    outages = 0

    class GoesDown(RecordingHandler):
        async def apply(self, tx: Any, messages: Any) -> Any:
            nonlocal outages
            if outages < 5:  # PostgreSQL dies under the entry, and stays down a while
                outages += 1
                ledger.down = True
                raise PostgresUnavailable("postgres: connection reset")
            return await super().apply(tx, messages)

    handler = GoesDown()
    entry = inbound.add(insight(1))
    async with running(inbound, ledger, handler, max_deliveries=2):

        def outages_reach(count: int) -> bool:
            return outages == count

        for seen in range(1, 6):
            await until(partial(outages_reach, seen))
            await trio.sleep(2)
            ledger.down = False
        await until(lambda: entry in inbound.acked)
    assert inbound.dlq == [] and handler.media() == [1]
    assert inbound.pending == {} and "reread_pending" in inbound.calls
