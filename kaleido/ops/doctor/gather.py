"""The I/O of `kaleido doctor`: read the facts from Redis and PostgreSQL (read-only) and run every
check on them (:func:`diagnose`); an unreachable server is itself a finding."""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Any

import trio

from kaleido.errors import (
    BackendError,
    RedisCommandError,
    RedisFunctionMissing,
    RedisPermissionDenied,
)
from kaleido.gateways import FUNCTIONS, Backends, PostgresGateway, RedisGateway
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS
from kaleido.migrate import available_migrations, schema_version
from kaleido.ops.doctor.findings import Finding, Level, on_node
from kaleido.ops.doctor.growth_checks import Measure, check_growth
from kaleido.ops.doctor.redis_checks import (
    NOT_CHECKED,
    KeySample,
    check_keys,
    check_memory,
    check_persistence,
    check_policy,
    check_scripts,
)
from kaleido.ops.doctor.work_checks import (
    BacklogFacts,
    check_backlog,
    check_dlq,
    check_outbox,
    check_schema,
    check_streams,
)
from kaleido.ops.limits import (
    SESSION_LIFETIME,
    STALE_SYNC_INTERVALS,
)
from kaleido.ops.redis_info import read_node_facts
from kaleido.ops.streams import ALL_STREAMS, StreamStatus, dlq_sizes, read_streams
from kaleido.outbox import PostgresOutbox
from kaleido.outbox.publish import MARK_RETENTION
from kaleido.redis_functions import library_problem, version
from kaleido.redis_preflight import check_redis_rights
from kaleido.redis_url import redis_credentials
from kaleido.streams.housekeeping import PRUNE_INTERVAL, RETENTION
from kaleido.streams.inbound import DLQ_MAXLEN
from kaleido.views.journal import DONE_MARKER_RETENTION
from kaleido.views.sync import BATCH_RETENTION_DAYS

# Keys sampled by SCAN for the TTL checks: enough to see a pattern, cheap on a big keyspace.
SAMPLE_SIZE = 2000
SCAN_COUNT = 1000
# SCAN with MATCH may return few keys per call; bound the calls, not only the keys.
MAX_SCAN_CALLS = 100
# DLQ sizes are read twice this far apart to tell a growing queue from an old one.
DLQ_INTERVAL = 2.0


async def _scan(redis: RedisGateway, pattern: str, limit: int) -> list[bytes]:
    """Up to `limit` keys matching `pattern`, from every master (each has its own cursor)."""
    found: list[bytes] = []
    for node in await redis.master_names():
        cursor: Any = 0
        for _ in range(MAX_SCAN_CALLS):
            cursor, batch = await redis.on_master(
                node, "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
            )
            found += batch
            if int(cursor) == 0 or len(found) >= limit:
                break
        if len(found) >= limit:
            break
    return found[:limit]


def _must_not_expire(keys: KeyLayout, streams: set[str], name: str) -> bool:
    """Whether a key is Kaleido's and must never carry a TTL: every `view:` key but the dedup
    buckets, their directories and the sync lock, and every stream. Other keys are not judged
    (a Redis shared with other applications holds theirs)."""
    if fnmatch.fnmatchcase(name, keys.seen_pattern()) or name == keys.lock:
        return False
    if fnmatch.fnmatchcase(name, keys.directory_pattern()):
        return False
    return name.startswith(keys.prefix + "view:") or name in streams


def _stream_keys(keys: KeyLayout) -> set[str]:
    return {keys.stream(s) for s in ALL_STREAMS} | {keys.dlq(s) for s in INBOUND_STREAMS}


async def sample_keys(
    redis: RedisGateway, keys: KeyLayout, stale_after: float, sample: int = SAMPLE_SIZE
) -> KeySample:
    """SCAN a sample of keys for their TTL, and of dedup buckets for their TTL and encoding;
    read how long each partition's counts hash has been idle."""
    sampled = await _scan(redis, keys.prefix + "*", sample)
    ttls = await redis.pipeline([("TTL", k) for k in sampled])
    live = [
        (k.decode(errors="replace"), int(t))
        for k, t in zip(sampled, ttls, strict=True)
        if int(t) != -2
    ]
    streams = _stream_keys(keys)
    unexpected = tuple(k for k, t in live if t >= 0 and _must_not_expire(keys, streams, k))

    buckets = await _scan(redis, keys.seen_pattern(), sample)
    replies = await redis.pipeline(
        [("TTL", b) for b in buckets] + [("OBJECT", "ENCODING", b) for b in buckets]
    )
    bucket_ttls, encodings = replies[: len(buckets)], replies[len(buckets) :]
    # A bucket that expired between SCAN and these reads has TTL -2 and no encoding.
    converted = [
        b for b, e in zip(buckets, encodings, strict=True) if e is not None and e != b"listpack"
    ]
    sizes = await redis.pipeline([("HLEN", b) for b in converted])

    counts = [keys.counts(q) for q in range(keys.partitions)]
    # Only OBJECT reads them: a command on the hash would reset the idle time it measures.
    counted: int | None = None
    stale: tuple[int, ...] = ()
    try:
        idle = await redis.pipeline([("OBJECT", "IDLETIME", k) for k in counts])
    except RedisCommandError:
        pass  # an LFU eviction policy keeps no idle times
    else:
        counted = sum(1 for i in idle if i is not None)
        stale = tuple(q for q, i in enumerate(idle) if i is not None and int(i) > stale_after)
    return KeySample(
        sampled=len(live),
        with_ttl=sum(1 for _, t in live if t >= 0),
        unexpected_ttl=unexpected,
        buckets=sum(1 for t in bucket_ttls if int(t) != -2),
        buckets_without_ttl=sum(1 for t in bucket_ttls if int(t) == -1),
        converted_buckets=tuple(int(n) for n in sizes if int(n)),
        counted_partitions=counted,
        stale_partitions=stale,
    )


async def script_findings(redis: RedisGateway) -> list[Finding]:
    """How Kaleido's scripts run, and in the `functions` mode whether every master holds this
    version of the library."""
    problem = await library_problem(redis) if redis.scripts == FUNCTIONS else None
    return check_scripts(redis.scripts, problem, version())


async def read_backlog(postgres: PostgresGateway) -> BacklogFacts:
    row = await postgres.fetchrow(
        "SELECT count(*) AS posts, coalesce(sum(views), 0) AS views,"
        " extract(epoch FROM now() - min(updated_at)) / 86400 AS age FROM post_view_backlog"
    )
    age = None if row["age"] is None else float(row["age"])
    return BacklogFacts(int(row["posts"]), int(row["views"]), age)


# Rows counted at most: a count stops here (a big table is not scanned whole to say it is big).
COUNT_CAP = 1_000_000
# Views journaled while Redis was down, replayed at the next sync once it is back: a journal
# this large means a long outage, or syncs that cannot replay it.
JOURNAL_BOUND = 1_000_000
# MAXLEN ~ trims whole stream nodes (100 entries each by default): a stream may exceed its
# MAXLEN by this much.
TRIM_SLACK = 100
# Relays sweep marks every 10 min (actors.outbox_relay.SWEEP_INTERVAL); a mark up to this much
# older than MARK_RETENTION is still on schedule.
SWEEP_SLACK = 3600.0
_DAY = 86400.0

# Per table: its rows (capped) and its oldest row's age in days (None when it is empty).
_PG_GROWTH = """
SELECT
  (SELECT count(*) FROM (SELECT 1 FROM view_sync_batches LIMIT $1) t) AS batches,
  (SELECT extract(epoch FROM now() - min(applied_at)) / 86400 FROM view_sync_batches)
      AS batches_age,
  (SELECT count(*) FROM (SELECT 1 FROM processed_messages LIMIT $1) t) AS processed,
  (SELECT extract(epoch FROM now() - min(processed_at)) / 86400 FROM processed_messages)
      AS processed_age,
  (SELECT count(*) FROM (SELECT 1 FROM view_journal LIMIT $1) t) AS journal
"""


async def read_pg_growth(postgres: PostgresGateway) -> list[Measure]:
    """Sizes and ages of the PostgreSQL tables that grow with traffic or time (the backlog and
    the outbox have checks of their own)."""
    row = await postgres.fetchrow(_PG_GROWTH, COUNT_CAP + 1)
    batches, processed = int(row["batches"]), int(row["processed"])
    return [
        Measure(
            "view_sync_batches", _age(row["batches_age"]), BATCH_RETENTION_DAYS + 1,
            "days old", "each sync prunes ids past 7 days: is a syncer running? (`kaleido sync`)",
            f"{_rows(batches)} rows",
        ),
        Measure(
            "processed_messages", _age(row["processed_age"]),
            (RETENTION + 2 * PRUNE_INTERVAL) / _DAY, "days old",
            "each stream consumer prunes its rows hourly: are the consumers running?",
            f"{_rows(processed)} rows",
        ),
        Measure(
            "view_journal", min(int(row["journal"]), COUNT_CAP), JOURNAL_BOUND, "rows",
            "views taken while Redis was down; the next sync replays them once Redis answers",
            capped=int(row["journal"]) > COUNT_CAP,
        ),
    ]  # fmt: skip


async def read_redis_growth(
    redis: RedisGateway, keys: KeyLayout, statuses: list[StreamStatus], maxlen: int
) -> list[Measure]:
    """Streams, dead-letter queues, outbox marks, journal replay markers and console sessions
    against their bounds."""
    out = []
    for s in statuses:
        if s.inbound:
            out.append(Measure(
                f"{s.stream}:dlq", s.dlq_size, DLQ_MAXLEN + TRIM_SLACK, "dead letters",
                "each dead letter is added with MAXLEN ~ 100000: something else writes here?",
            ))  # fmt: skip
        else:
            out.append(Measure(
                s.stream, s.length, maxlen + TRIM_SLACK, "entries",
                "the relay adds with MAXLEN ~ KALEIDO_STREAM_MAXLEN: something else writes here?",
            ))  # fmt: skip
    outbound = [s.stream for s in statuses if not s.inbound]
    calls: list[tuple[object, ...]] = [("TIME",)]
    for stream in outbound:
        calls += [("ZCARD", keys.outbox_marks(stream)),
                  ("ZRANGE", keys.outbox_marks(stream), 0, 0, "WITHSCORES")]  # fmt: skip
    replies = await redis.pipeline(calls)
    now_ms = int(replies[0][0]) * 1000 + int(replies[0][1]) // 1000
    for i, stream in enumerate(outbound):
        count, oldest = int(replies[1 + 2 * i]), replies[2 + 2 * i]
        age = (now_ms - float(oldest[1])) / 1000 / 3600 if oldest else 0.0
        out.append(Measure(
            f"{stream} outbox marks", round(age, 1), (MARK_RETENTION + SWEEP_SLACK) / 3600,
            "hours old", "relays sweep marks past 24 h every 10 min: is a relay running?",
            f"{count} marks",
        ))  # fmt: skip
    sizes = await redis.pipeline(
        [("ZCARD", keys.replayed(q)) for q in range(keys.partitions)]
        + [("HLEN", keys.console_sessions), ("TTL", keys.console_sessions)]
    )
    markers = sum(int(n) for n in sizes[: keys.partitions])
    out.append(Measure(
        "journal replay markers", markers, JOURNAL_BOUND // 2000 * keys.partitions, "markers",
        f"kept {DONE_MARKER_RETENTION // 3600} h, one per replay chunk and partition",
    ))  # fmt: skip
    sessions, ttl = int(sizes[-2]), int(sizes[-1])
    hours = float("inf") if ttl == -1 else max(ttl, 0) / 3_600  # -1: no expiry at all
    out.append(Measure(
        "console sessions", round(hours, 1), (SESSION_LIFETIME + 60) / 3600, "hours to live",
        "every sign-in sets a 12 h expiry on the sessions hash (ops:sessions)",
        f"{sessions} sessions",
    ))  # fmt: skip
    return out


def _age(days: object) -> float:
    return 0.0 if days is None else round(float(days), 1)  # type: ignore[arg-type]


def _rows(n: int) -> str:
    return f"over {COUNT_CAP:,}" if n > COUNT_CAP else f"{n:,}"


def _unreachable(what: str, exc: BackendError) -> Finding:
    return Finding(what, Level.PROBLEM, f"cannot reach {what}: {exc}", "is it running?")


def _no_right(url: str, exc: RedisPermissionDenied) -> Finding:
    user, _ = redis_credentials(url)
    return Finding(
        "Redis", Level.PROBLEM, f"the Redis user {user!r} lacks a right: {exc}",
        "grant the rule `kaleido redis-acl` prints (ACL SETUSER or the aclfile)",
    )  # fmt: skip


async def diagnose(backends: Backends, dlq_interval: float = DLQ_INTERVAL) -> list[Finding]:
    """Gather the facts and run every check; read-only but for the rights check's throwaway
    probe keys."""
    redis, keys = backends.redis, backends.keys
    stale_after = STALE_SYNC_INTERVALS * backends.settings.sync_interval
    findings: list[Finding] = []
    first_dlq: dict[str, int] | None = None
    started = trio.current_time()
    try:
        findings += await script_findings(redis)
        # A missing library is reported by the scripts check.
        with contextlib.suppress(RedisFunctionMissing):
            await check_redis_rights(redis, keys)
        for facts in await read_node_facts(redis):  # every master of a cluster
            node_findings = check_memory(facts) + check_policy(facts) + check_persistence(facts)
            findings += [on_node(f, facts.node) for f in node_findings]
        findings.append(NOT_CHECKED)
        statuses = await read_streams(redis, keys)
        first_dlq = {s.stream: s.dlq_size for s in statuses if s.inbound}
        findings += check_keys(await sample_keys(redis, keys, stale_after), stale_after)
        findings += check_streams(statuses)
        maxlen = backends.settings.stream_maxlen
        findings += check_growth(await read_redis_growth(redis, keys, statuses, maxlen))
    except RedisPermissionDenied as exc:
        findings.append(_no_right(backends.settings.redis_url or "", exc))
    except BackendError as exc:
        findings.append(_unreachable("Redis", exc))
    try:
        applied = await schema_version(backends.postgres)
        findings += check_schema(applied, available_migrations()[-1].version)
        if applied is not None:
            findings += check_backlog(await read_backlog(backends.postgres))
            findings += check_outbox(await PostgresOutbox(backends.postgres).backlog())
            findings += check_growth(await read_pg_growth(backends.postgres))
    except BackendError as exc:
        findings.append(_unreachable("PostgreSQL", exc))
    if first_dlq is not None:
        await trio.sleep_until(started + dlq_interval)
        try:
            findings += check_dlq(first_dlq, await dlq_sizes(redis, keys), dlq_interval)
        except BackendError as exc:
            findings.append(_unreachable("Redis", exc))
    return findings
