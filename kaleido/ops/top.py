"""`kaleido top`: a live terminal dashboard of one deployment.

`TopCollector.snapshot()` reads Redis (memory, pending views, streams, DLQs), PostgreSQL (the
last sync batch) and, when given the service's URL, its `/metrics` (ingest rate, last good
sync, breaker states). `render(snapshot)` is a pure function of that snapshot, so what the
screen shows is testable without a terminal; `run_top` redraws it every second with rich's
`Live` until Ctrl-C.

How errors behave: whatever cannot be read is shown as unknown with the reason on the screen;
the dashboard keeps refreshing (a server may come back).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping

import attrs
import trio
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kaleido.errors import BackendError
from kaleido.gateways import Backends
from kaleido.ops.limits import LAG_LIMIT, MEMORY_PROBLEM, MEMORY_WARNING, STALE_SYNC_INTERVALS
from kaleido.ops.redis_info import RedisFacts, read_facts
from kaleido.ops.streams import StreamStatus, read_streams
from kaleido.views.store import pending_posts

REFRESH = 1.0
# /metrics must answer quickly or the dashboard stalls; it is retried at the next refresh.
METRICS_TIMEOUT = 2.0
# Views that reached Redis or the PostgreSQL fallback (rejected ones were never taken).
INGESTED_OUTCOMES = ("counted", "duplicate", "journaled")


@attrs.frozen
class ServiceFigures:
    """What the running service's /metrics says (only with --url)."""

    views_ingested: float
    last_sync_at: float | None  # Unix time of the last good sync, None before the first
    breakers: Mapping[str, str]  # breaker name → state


@attrs.frozen
class Snapshot:
    taken_at: float  # Unix time
    service_url: str | None = None  # whose /metrics were read, if any
    redis: RedisFacts | None = None
    pending_views: int | None = None
    streams: tuple[StreamStatus, ...] = ()
    last_sync_at: float | None = None
    ingest_rate: float | None = None  # views/s since the previous snapshot
    breakers: Mapping[str, str] = attrs.Factory(dict)
    errors: tuple[str, ...] = ()
    sync_interval: float = 300.0


def parse_metrics(text: str) -> ServiceFigures:
    """The figures top shows, from a Prometheus text exposition."""
    ingested, last_sync = 0.0, None
    breakers: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kaleido_views_total":
                if sample.labels.get("outcome") in INGESTED_OUTCOMES:
                    ingested += sample.value
            elif sample.name == "kaleido_last_sync_success_timestamp_seconds":
                last_sync = sample.value or None
            elif sample.name == "kaleido_breaker_state" and sample.value == 1:
                breakers[sample.labels["breaker"]] = sample.labels["state"]
    return ServiceFigures(ingested, last_sync, breakers)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT) as reply:
        body: bytes = reply.read()
    return body.decode()


@attrs.define
class TopCollector:
    """Takes snapshots; remembers the previous view count to turn counters into rates."""

    backends: Backends
    url: str | None = None
    _previous: tuple[float, float] | None = attrs.field(default=None, init=False)

    @property
    def metrics_url(self) -> str | None:
        return None if self.url is None else self.url.rstrip("/") + "/metrics"

    async def snapshot(self) -> Snapshot:
        redis, keys = self.backends.redis, self.backends.keys
        snap = Snapshot(
            taken_at=time.time(),
            service_url=self.url,
            sync_interval=self.backends.settings.sync_interval,
        )
        errors: list[str] = []
        try:
            snap = attrs.evolve(
                snap,
                redis=await read_facts(redis),
                pending_views=await pending_posts(redis, keys),
                streams=tuple(await read_streams(redis, keys)),
            )
        except BackendError as exc:
            errors.append(f"Redis: {exc}")
        try:
            snap = attrs.evolve(snap, last_sync_at=await self._last_batch())
        except BackendError as exc:
            errors.append(f"PostgreSQL: {exc}")
        if self.metrics_url is not None:
            try:
                text = await trio.to_thread.run_sync(
                    _fetch, self.metrics_url, abandon_on_cancel=True
                )
                figures = parse_metrics(text)
            except (OSError, ValueError) as exc:  # URLError is an OSError; ValueError: parse
                errors.append(f"{self.metrics_url}: {exc}")
            else:
                snap = attrs.evolve(
                    snap,
                    breakers=figures.breakers,
                    # A restarted service has no sync yet; PostgreSQL remembers the last batch.
                    last_sync_at=figures.last_sync_at or snap.last_sync_at,
                    ingest_rate=self._rate(figures.views_ingested),
                )
        return attrs.evolve(snap, errors=tuple(errors))

    async def _last_batch(self) -> float | None:
        """When the last sync batch was applied (a sync with nothing to move leaves none)."""
        value = await self.backends.postgres.fetchval(
            "SELECT extract(epoch FROM max(applied_at))::float8 FROM view_sync_batches"
        )
        return None if value is None else float(value)

    def _rate(self, ingested: float) -> float | None:
        now = time.monotonic()
        previous, self._previous = self._previous, (now, ingested)
        if previous is None or now <= previous[0]:
            return None
        return max(0.0, ingested - previous[1]) / (now - previous[0])


# ---------------------------------------------------------------------- rendering


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _views_table(s: Snapshot) -> Table:
    table = Table(title="views", show_header=False, title_justify="left", expand=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    if s.ingest_rate is not None:
        rate = f"{s.ingest_rate:,.1f} views/s"
    else:
        rate = "measuring…" if s.service_url else "— (needs --url)"
    table.add_row("ingest rate", rate)
    pending = "?" if s.pending_views is None else f"{s.pending_views:,} posts"
    table.add_row("pending views", pending)
    if s.last_sync_at is None:
        table.add_row("last sync", Text("none yet", style="yellow"))
    else:
        age = max(0.0, s.taken_at - s.last_sync_at)
        stale = age > STALE_SYNC_INTERVALS * s.sync_interval
        table.add_row("last sync", Text(_ago(age), style="red" if stale else "green"))
    return table


def _redis_table(s: Snapshot) -> Table:
    table = Table(title="redis", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    r = s.redis
    if r is None:
        table.add_row("memory", "?")
        return table
    mb = r.used_memory / 1048576
    if r.maxmemory:
        ratio = r.used_memory / r.maxmemory
        style = "red" if ratio >= MEMORY_PROBLEM else "yellow" if ratio >= MEMORY_WARNING else ""
        memory = Text(f"{mb:,.1f} / {r.maxmemory / 1048576:,.0f} MB ({ratio:.0%})", style=style)
    else:
        memory = Text(f"{mb:,.1f} MB (no maxmemory)", style="red")
    table.add_row("memory", memory)
    policy_style = "red" if r.policy.startswith("allkeys-") else ""
    table.add_row("policy", Text(r.policy, style=policy_style))
    table.add_row("evicted keys", f"{r.evicted_keys:,}")
    table.add_row("hits / misses", f"{r.keyspace_hits:,} / {r.keyspace_misses:,}")
    return table


def _streams_table(s: Snapshot) -> Table:
    table = Table(title="streams", title_justify="left")
    for name, justify in [
        ("stream", "left"), ("length", "right"), ("lag", "right"), ("pending", "right"),
        ("oldest pending", "right"), ("dlq", "right"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for st in s.streams:
        ages = [g.oldest_pending_age for g in st.groups if g.oldest_pending_age is not None]
        oldest = f"{max(ages):.0f} s" if ages else "—"
        lag = Text(f"{st.lag:,}", style="red" if st.lag > LAG_LIMIT else "")
        dlq = Text(f"{st.dlq_size:,}", style="yellow" if st.dlq_size else "") if st.inbound else "—"
        groups = "" if st.groups else " (no group)"
        table.add_row(f"{st.stream}{groups}", f"{st.length:,}", lag, f"{st.pending:,}", oldest, dlq)
    return table


def _breakers_line(s: Snapshot) -> Text:
    if not s.breakers:
        return Text("breakers: — (needs --url)", style="dim")
    line = Text("breakers: ")
    for name, state in sorted(s.breakers.items()):
        line.append(f"{name} ", style="bold")
        line.append(state, style="green" if state == "closed" else "red")
        line.append("  ")
    return line


def render(snapshot: Snapshot) -> RenderableType:
    """The whole screen for one snapshot (pure: no I/O, no clock)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
    source = snapshot.service_url or "Redis + PostgreSQL"
    header = Text(f"kaleido top  {stamp}  source: {source}", style="bold")
    parts: list[RenderableType] = [header]
    overview = Table.grid(padding=(0, 4))
    overview.add_row(_views_table(snapshot), _redis_table(snapshot))
    parts += [overview, _streams_table(snapshot), _breakers_line(snapshot)]
    parts += [Text(f"unavailable: {e}", style="red") for e in snapshot.errors]
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)


async def run_top(
    backends: Backends,
    url: str | None = None,
    *,
    refresh: float = REFRESH,
    once: bool = False,
    console: Console | None = None,
) -> None:
    """Redraw the dashboard every `refresh` seconds until cancelled (or once, with `once`).

    Not on a terminal (piped to a file), each frame is printed after the previous one.
    """
    collector = TopCollector(backends, url)
    console = console or Console()
    if once or not console.is_terminal:
        while True:
            console.print(render(await collector.snapshot()))
            console.file.flush()
            if once:
                return
            await trio.sleep(refresh)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            live.update(render(await collector.snapshot()), refresh=True)
            await trio.sleep(refresh)
