"""The last hour of the service in memory, for the ops console: one `Sample` per metrics-reporter
tick in a bounded ring (`History`), and the last sync runs (`SyncLog`).

Per process: under `--workers N` each worker keeps its own. The Redis figures and the view
counts (kaleido.metrics.views_by_outcome sums every worker's) describe the whole service; the
breakers and the sync runs are the answering worker's own.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping

import attrs

SPAN = 3600.0  # seconds of history kept
# A ring never holds more than this, however short the reporter's interval.
MAX_SAMPLES = 7200
SYNC_RUNS = 20  # sync runs kept


@attrs.frozen
class Sample:
    """What one reporter tick saw. Redis figures are None when Redis could not be sampled."""

    at: float  # unix time
    views_counted: float  # counter totals since start-up (rates come from two samples)
    views_duplicate: float
    breakers: Mapping[str, str] = attrs.field(factory=dict)  # name -> BreakerState value
    pending_posts: int | None = None
    memory_used: int | None = None
    memory_max: int | None = None  # 0: no maxmemory
    evicted_keys: int | None = None
    lag: int | None = None  # undelivered entries, summed over every stream's groups
    dlq: int | None = None  # dead letters, summed over the inbound streams
    last_good_sync: float | None = None  # unix time, by any process


@attrs.frozen
class Rate:
    at: float
    counted: float  # views per second
    duplicate: float


def ring_capacity(interval: float, span: float = SPAN) -> int:
    """Samples that cover `span` seconds at one per `interval` (bounded by MAX_SAMPLES)."""
    if not interval > 0:
        raise ValueError(f"interval: expected a positive number of seconds, got {interval!r}")
    return max(2, min(MAX_SAMPLES, math.ceil(span / interval) + 1))


class History:
    """A ring of the last `span` seconds of samples; the oldest falls out when it is full."""

    def __init__(self, interval: float, span: float = SPAN) -> None:
        self.interval = interval
        self.capacity = ring_capacity(interval, span)
        self._ring: deque[Sample] = deque(maxlen=self.capacity)

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, sample: Sample) -> None:
        self._ring.append(sample)

    def samples(self) -> list[Sample]:
        return list(self._ring)

    def latest(self) -> Sample | None:
        return self._ring[-1] if self._ring else None

    def rates(self) -> list[Rate]:
        """Views per second between consecutive samples. A counter that went down (a worker
        restarted and its totals left the sum) reads as 0 for that step, not as negative."""
        out: list[Rate] = []
        samples = list(self._ring)
        for before, after in itertools.pairwise(samples):
            elapsed = after.at - before.at
            if elapsed <= 0:
                continue
            counted = max(0.0, after.views_counted - before.views_counted) / elapsed
            duplicate = max(0.0, after.views_duplicate - before.views_duplicate) / elapsed
            out.append(Rate(after.at, counted, duplicate))
        return out


@attrs.frozen
class SyncRun:
    """One run of the view syncer, as the console lists it."""

    at: float  # unix time it finished
    result: str  # success, failure, busy (another process held the lock)
    seconds: float
    views: int = 0
    posts: int = 0
    error: str | None = None


class SyncLog:
    """The last `size` sync runs of this process, newest first."""

    def __init__(self, size: int = SYNC_RUNS) -> None:
        self._runs: deque[SyncRun] = deque(maxlen=size)

    def record(self, run: SyncRun) -> None:
        self._runs.appendleft(run)

    def runs(self) -> list[SyncRun]:
        return list(self._runs)
