"""What a consumer counts, in one place: `ConsumerStats` (read by tests and benchmarks) and
the Prometheus series, always moved together, and the log line of each error kind."""

from __future__ import annotations

from typing import Literal

import attrs

from kaleido.logs import get_logger
from kaleido.metrics import Metrics

# Every part of the consumer logs as the consumer (one component in the logs).
log = get_logger("kaleido.streams.consumer")

Outcome = Literal[
    "applied", "duplicate", "ignored", "stale", "dead_lettered", "reclaimed", "retried"
]
ErrorKind = Literal[
    "nogroup",
    "postgres_unavailable",
    "redis_unavailable",
    "backend_error",
    "query_error",
    "handler_error",
]
# Errors that need a look (a rejected statement, a bug); the others are outages that pass.
_SERIOUS: frozenset[ErrorKind] = frozenset({"query_error", "handler_error", "backend_error"})


@attrs.define
class ConsumerStats:
    """Counters of one consumer (the same as the Prometheus ones, handy in tests)."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    stale: int = 0  # answers to a superseded request: recorded, no effect
    dead_lettered: int = 0
    reclaimed: int = 0
    retried: int = 0  # entries left pending because PostgreSQL was down
    batches: int = 0
    nogroup: int = 0
    redis_errors: int = 0
    postgres_outages: int = 0
    trimmed: int = 0
    pruned: int = 0


_STAT_OF_OUTCOME: dict[Outcome, str] = {
    "applied": "applied",
    "duplicate": "duplicates",
    "ignored": "ignored",
    "stale": "stale",
    "dead_lettered": "dead_lettered",
    "reclaimed": "reclaimed",
    "retried": "retried",
}
_STAT_OF_ERROR: dict[ErrorKind, str] = {"nogroup": "nogroup", "redis_unavailable": "redis_errors"}


@attrs.define
class ConsumerCounters:
    """The counters of one consumer of `stream`; `metrics` None counts in `stats` only."""

    stream: str
    metrics: Metrics | None = None
    stats: ConsumerStats = attrs.Factory(ConsumerStats)

    def entries(self, outcome: Outcome, n: int) -> None:
        """`n` entries had `outcome`."""
        if not n:
            return
        name = _STAT_OF_OUTCOME[outcome]
        setattr(self.stats, name, getattr(self.stats, name) + n)
        if self.metrics is not None:
            self.metrics.stream_entries.labels(self.stream, outcome).inc(n)

    def batch(self) -> None:
        """One batch went through PostgreSQL."""
        self.stats.batches += 1
        if self.metrics is not None:
            self.metrics.stream_batches.labels(self.stream).inc()

    def error(self, kind: ErrorKind, exc: BaseException) -> None:
        """Count and log one error of `kind`."""
        stat = _STAT_OF_ERROR.get(kind)
        if stat is not None:
            setattr(self.stats, stat, getattr(self.stats, stat) + 1)
        if self.metrics is not None:
            self.metrics.stream_errors.labels(self.stream, kind).inc()
        level = log.error if kind in _SERIOUS else log.warning
        # A traceback only where it helps: an exception nobody foresaw.
        trace = exc if kind == "handler_error" else None
        level("consumer.error", stream=self.stream, kind=kind, error=str(exc), exc_info=trace)
