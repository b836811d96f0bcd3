"""The console's overview (`/ops`: the last hour from the reporter's history ring, breakers,
alerts, the last syncs) and streams (`/ops/streams`: a live snapshot of every stream) pages.

Each figure carries a tone (ok, warn, bad, muted) judged with the thresholds of
kaleido.ops.limits, so a red tile here means what a doctor finding or an alert log line means.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from kaleido.http.console.charts import Chart, Point, chart_span, line_chart
from kaleido.http.console.guard import Access, Form
from kaleido.http.console.render import ago, number, page, size
from kaleido.ops.history import History, Sample
from kaleido.ops.limits import (
    IDLE_LIMIT,
    LAG_LIMIT,
    MEMORY_PROBLEM,
    MEMORY_WARNING,
    OUTBOX_AGE_LIMIT,
    PENDING_AGE_LIMIT,
    STALE_SYNC_INTERVALS,
)
from kaleido.ops.streams import read_streams
from kaleido.outbox import Backlog
from kaleido.service import Service

REFRESH = 10  # seconds between automatic reloads of the overview and streams pages


@attrs.frozen
class Tile:
    label: str
    value: str
    detail: str = ""
    tone: str = "ok"


def _first(samples: list[Sample], field: str) -> Any:
    return next((getattr(s, field) for s in samples if getattr(s, field) is not None), None)


def tiles(history: History, now: float, sync_interval: float) -> list[Tile]:
    """The headline figures of the newest sample, each judged."""
    samples, rates = history.samples(), history.rates()
    latest = history.latest()
    if latest is None:
        return [Tile("History", "none yet", "the first sample comes within seconds", "muted")]
    rate = rates[-1] if rates else None
    out = [
        Tile("Views counted", "?" if rate is None else f"{rate.counted:.1f}/s",
             "per second, last interval", "ok" if rate else "muted"),
        Tile("Duplicate views", "?" if rate is None else f"{rate.duplicate:.1f}/s",
             "deduplicated per user and post", "ok" if rate else "muted"),
        Tile("Pending posts", number(latest.pending_posts), "posts with views not yet synced",
             "ok" if latest.pending_posts is not None else "muted"),
    ]  # fmt: skip
    used, limit = latest.memory_used, latest.memory_max
    if used is None:
        out.append(Tile("Redis memory", "?", "Redis was not sampled at the last tick", "bad"))
    elif not limit:
        out.append(Tile("Redis memory", size(used), "no maxmemory set", "warn"))
    else:
        ratio = used / limit
        tone = "bad" if ratio > MEMORY_PROBLEM else "warn" if ratio > MEMORY_WARNING else "ok"
        out.append(Tile("Redis memory", f"{ratio:.0%}", f"{size(used)} of {size(limit)}", tone))
    first_evicted = _first(samples, "evicted_keys")
    if latest.evicted_keys is not None:
        recent = latest.evicted_keys - (first_evicted or 0)
        detail = f"{number(recent)} in the last hour"
        tone = "bad" if recent > 0 else "ok"
        out.append(Tile("Evicted keys", number(latest.evicted_keys), detail, tone))
    if latest.lag is not None:
        tone = "bad" if latest.lag > LAG_LIMIT else "ok"
        out.append(Tile("Stream lag", number(latest.lag), "entries not yet delivered", tone))
    if latest.dlq is not None:
        grown = latest.dlq - (_first(samples, "dlq") or 0)
        tone = "bad" if grown > 0 else "warn" if latest.dlq else "ok"
        detail = f"+{number(grown)} in the last hour" if grown > 0 else "not growing"
        out.append(Tile("Dead letters", number(latest.dlq), detail, tone))
    if latest.last_good_sync is None:
        out.append(Tile("Last good sync", "none", "no sync has succeeded yet", "warn"))
    else:
        age = now - latest.last_good_sync
        stale = age > STALE_SYNC_INTERVALS * sync_interval
        out.append(Tile("Last good sync", f"{ago(age)} ago", "by any process",
                        "bad" if stale else "ok"))  # fmt: skip
    return out


def outbox_tile(backlog: Backlog | None) -> Tile:
    """Announcements committed and not yet published to the ML service, as the relay last
    read them."""
    if backlog is None:
        return Tile("Outbox", "?", "the relay has not read it yet", "muted")
    if not backlog.rows:
        return Tile("Outbox", "0", "every announcement is published")
    tone = "bad" if backlog.oldest_seconds > OUTBOX_AGE_LIMIT else "ok"
    return Tile("Outbox", number(backlog.rows), f"oldest {ago(backlog.oldest_seconds)}", tone)


def _count(value: float) -> str:
    """A grid label for a count: `0.5` when small and fractional, else `12 000`."""
    return number(value) if value >= 10 or value == int(value) else f"{value:.1f}"


def charts(history: History, now: float) -> list[Chart]:
    samples, rates = history.samples(), history.rates()
    span = chart_span(samples[0].at if samples else None, now)

    def of(field: str) -> list[Point]:
        return [(s.at, getattr(s, field)) for s in samples]

    memory = [("used", "tone-1", of("memory_used"))]
    if any(s.memory_max for s in samples):
        memory.append(("maxmemory", "tone-limit", of("memory_max")))
    return [
        line_chart(
            "Views per second",
            [
                ("counted", "tone-1", [(r.at, r.counted) for r in rates]),
                ("duplicate", "tone-2", [(r.at, r.duplicate) for r in rates]),
            ],
            now=now,
            span=span,
            fmt=lambda v: f"{v:.3g}/s",
        ),
        line_chart(
            "Pending posts",
            [("pending", "tone-1", of("pending_posts"))],
            now=now,
            span=span,
            fmt=_count,
        ),
        line_chart(
            "Redis memory",
            memory,
            now=now,
            span=span,
            fmt=size,
            dashed=("maxmemory",),
            unit=1024**2,
        ),
        line_chart(
            "Stream lag and dead letters",
            [("lag", "tone-1", of("lag")), ("dead letters", "tone-3", of("dlq"))],
            now=now,
            span=span,
            fmt=_count,
        ),
    ]


async def overview(request: Request, access: Access, form: Form) -> Response:
    service: Service = request.app.state.service
    now = time.time()
    reporter = service.reporter
    history = reporter.history if reporter is not None else None
    breakers = []
    for breaker in (service.backends.redis.breaker, service.backends.postgres.breaker):
        if breaker is not None:
            snap = breaker.snapshot()
            tone = {"open": "bad", "half_open": "warn"}.get(snap.state.value, "ok")
            breakers.append((snap, tone))
    return page(
        request, "overview.html",
        refresh=REFRESH,
        history=history,
        tiles=[
            *(tiles(history, now, service.backends.settings.sync_interval) if history else []),
            outbox_tile(service.relay.stats.backlog),
        ],
        charts=charts(history, now) if history else [],
        alerts=sorted((reporter.alerts.active if reporter else {}).items()),
        breakers=breakers,
        syncs=service.syncer.runs.runs(),
        now=now,
    )  # fmt: skip


async def streams(request: Request, access: Access, form: Form) -> Response:
    service: Service = request.app.state.service
    statuses = await read_streams(service.backends.redis, service.backends.keys)
    limits = {"lag": LAG_LIMIT, "idle": IDLE_LIMIT, "pending_age": PENDING_AGE_LIMIT}
    return page(request, "streams.html", refresh=REFRESH, statuses=statuses, limits=limits)
