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
    STALE_SYNC_INTERVALS,
)
from kaleido.ops.redis_info import read_node_facts
from kaleido.ops.streams import ALL_STREAMS, dlq_sizes, read_streams
from kaleido.outbox import PostgresOutbox
from kaleido.redis_functions import library_problem, version
from kaleido.redis_preflight import check_redis_rights
from kaleido.redis_url import redis_credentials

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
    except BackendError as exc:
        findings.append(_unreachable("PostgreSQL", exc))
    if first_dlq is not None:
        await trio.sleep_until(started + dlq_interval)
        try:
            findings += check_dlq(first_dlq, await dlq_sizes(redis, keys), dlq_interval)
        except BackendError as exc:
            findings.append(_unreachable("Redis", exc))
    return findings
