"""Judges of the work in flight and where it lands: stream groups, dead-letter queues, views
waiting for a post row, the PostgreSQL schema version. Pure functions of the facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.doctor.findings import Finding, Level
from kaleido.ops.limits import (
    IDLE_LIMIT,
    LAG_LIMIT,
    OUTBOX_AGE_LIMIT,
    PENDING_AGE_LIMIT,
)
from kaleido.ops.streams import StreamStatus
from kaleido.outbox import Backlog
from kaleido.views.sync import BACKLOG_MAX_AGE_DAYS, BACKLOG_MAX_POSTS


def check_streams(statuses: Sequence[StreamStatus]) -> list[Finding]:
    out: list[Finding] = []
    for s in statuses:
        own = s.inbound  # inbound groups are Kaleido's; outbound ones are the ML service's
        if own and not s.groups:
            out.append(
                Finding(
                    f"stream {s.stream}",
                    Level.WARNING,
                    "no consumer group: Kaleido has not consumed from this Redis yet",
                    "start the service; it creates backend-group",
                )
            )
            continue
        if not own and not s.groups and s.length:
            out.append(
                Finding(
                    f"stream {s.stream}",
                    Level.WARNING,
                    f"{s.length} entries and no consumer group: the ML service is not reading",
                    "is the ML service running against this Redis?",
                )
            )
            continue
        problems: list[tuple[Level, str, str]] = []
        for g in s.groups:
            lag = g.lag or 0
            if lag > LAG_LIMIT:
                level = Level.PROBLEM if own else Level.WARNING
                problems.append((level, f"group {g.name} is {lag} entries behind", "add consumers"))
            stuck = [c for c in g.idle_consumers(IDLE_LIMIT) if c.pending]
            if stuck:
                names = ", ".join(f"{c.name} ({c.pending} pending)" for c in stuck)
                problems.append(
                    (
                        Level.PROBLEM if own else Level.WARNING,
                        f"group {g.name}: consumers idle over {IDLE_LIMIT:g} s hold entries: "
                        f"{names}",
                        "a running consumer of the group reclaims them after 60 s",
                    )
                )
            stale = [c.name for c in g.idle_consumers(IDLE_LIMIT) if not c.pending]
            if stale:
                problems.append(
                    (
                        Level.WARNING,
                        f"group {g.name}: consumers idle over {IDLE_LIMIT:g} s: {', '.join(stale)}",
                        f"old instances? XGROUP DELCONSUMER {s.stream} {g.name} <name>",
                    )
                )
            age = g.oldest_pending_age
            if age is not None and age > PENDING_AGE_LIMIT:
                problems.append(
                    (
                        Level.WARNING,
                        f"group {g.name}: oldest pending entry is {age:.0f} s old",
                        "see `kaleido streams`; failing entries reach the DLQ after max deliveries",
                    )
                )
        if not problems:
            lag_text = ", ".join(f"{g.name} lag {g.lag}, {g.pending} pending" for g in s.groups)
            out.append(Finding(f"stream {s.stream}", Level.OK, lag_text or "no consumer group"))
        for level, message, hint in problems:
            out.append(Finding(f"stream {s.stream}", level, message, hint))
    return out


def check_dlq(
    first: Mapping[str, int], second: Mapping[str, int], interval: float
) -> list[Finding]:
    out: list[Finding] = []
    for stream in INBOUND_STREAMS:
        before, after = first.get(stream, 0), second.get(stream, 0)
        check = f"dlq {stream}"
        if after > before:
            out.append(
                Finding(
                    check,
                    Level.PROBLEM,
                    f"dead-letter queue is growing: {before} → {after} in {interval:g} s",
                    f"see `kaleido dlq list {stream}`: entries are failing now",
                )
            )
        elif after:
            out.append(
                Finding(
                    check,
                    Level.WARNING,
                    f"{after} dead letters (not growing)",
                    f"`kaleido dlq list {stream}`, then replay or purge",
                )
            )
        else:
            out.append(Finding(check, Level.OK, "empty"))
    return out


@attrs.frozen
class BacklogFacts:
    posts: int
    views: int
    oldest_age_days: float | None


def check_backlog(facts: BacklogFacts) -> list[Finding]:
    """Views of posts with no row: normal while posts are being created, dropped past the
    syncer's bounds (kaleido.views.sync)."""
    if not facts.posts:
        return [Finding("unknown posts", Level.OK, "no synced views wait for a post row")]
    age = facts.oldest_age_days or 0.0
    message = (
        f"{facts.posts} posts without a row hold {facts.views} synced views (oldest "
        f"{age:.1f} days); kept {BACKLOG_MAX_AGE_DAYS:g} days, {BACKLOG_MAX_POSTS} posts at most"
    )
    near = facts.posts > 0.8 * BACKLOG_MAX_POSTS or age > BACKLOG_MAX_AGE_DAYS - 1
    if not near:
        return [Finding("unknown posts", Level.OK, message)]
    hint = "views are counted for posts that are never created: check the callers' post ids"
    return [Finding("unknown posts", Level.WARNING, message, hint)]


def check_outbox(backlog: Backlog) -> list[Finding]:
    """Announcements committed and not yet published (kaleido.outbox): a few for a moment is
    normal; an old one means the relay cannot publish (Redis down or refusing writes), and the
    ML service hears of nothing meanwhile (nothing is lost)."""
    message = f"{backlog.rows} announcements waiting, oldest {backlog.oldest_seconds:.0f} s"
    if backlog.oldest_seconds <= OUTBOX_AGE_LIMIT:
        return [Finding("outbox", Level.OK, message if backlog.rows else "nothing waiting")]
    return [
        Finding(
            "outbox",
            Level.PROBLEM,
            message,
            "is Redis up and writable? `kaleido_outbox_relay_failures` counts failed passes; "
            "the relay's log says why",
        )
    ]


def check_schema(applied: int | None, latest: int) -> list[Finding]:
    if applied is None:
        return [
            Finding(
                "schema",
                Level.PROBLEM,
                "no schema_migrations table: the database was never migrated",
                "start the service once: it applies the migrations",
            )
        ]
    if applied < latest:
        return [
            Finding(
                "schema",
                Level.PROBLEM,
                f"schema version {applied}, this Kaleido needs {latest}",
                "start the service: it applies the missing migrations",
            )
        ]
    if applied > latest:
        return [
            Finding(
                "schema",
                Level.WARNING,
                f"schema version {applied} is newer than this Kaleido's ({latest})",
                "upgrade this Kaleido",
            )
        ]
    return [Finding("schema", Level.OK, f"version {applied}, all migrations applied")]
