"""One-shot commands of the `kaleido` command line that talk to a running deployment's Redis
and PostgreSQL (`KALEIDO_REDIS_URL` and `KALEIDO_DATABASE_URL`, or those of `make run`). Results
go to stdout (one JSON object with `--json`: kaleido.cli_output), everything else to stderr."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Sequence

import attrs
import trio
from rich.console import Console
from rich.table import Table

from kaleido.cli_output import Progress, Stack, print_json
from kaleido.errors import ConfigError
from kaleido.gateways import open_backends
from kaleido.lock import LockBusy, RedisLock
from kaleido.migrate import migrate
from kaleido.ops.doctor import diagnose, exit_code, print_report
from kaleido.ops.streams import read_streams
from kaleido.ops.top import run_top
from kaleido.secret_settings import redact_url
from kaleido.settings import Settings
from kaleido.streams import dlq_list, dlq_purge, dlq_replay, dlq_replay_all, dlq_size
from kaleido.streams.dlq import REPLAY_LIMIT
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync


def require_urls(settings: Settings, command: str) -> None:
    if settings.embedded:
        raise ConfigError(
            f"kaleido {command}: set KALEIDO_REDIS_URL and KALEIDO_DATABASE_URL (or their "
            "_FILE variants) to the deployment to act on, or start `make run` (no dev stack "
            f"runs from the state folder {settings.state_dir}; KALEIDO_STATE_DIR picks another)"
        )


async def sync_now(stack: Stack, as_json: bool) -> int:
    """Run one sync under the lock, with a progress line per batch (at most one a second);
    print its report. Exit 1 if the lock is busy."""
    settings = stack.settings
    require_urls(settings, "sync")
    progress = Progress("kaleido sync")

    def batch_done(batches: int, posts: int) -> None:
        progress.update(f"{batches} batches applied, {posts} posts")

    async with open_backends(settings) as backends:
        await migrate(backends.postgres)
        store = ViewStore(backends.redis, backends.keys, settings.view_dedup_ttl)
        lock = RedisLock(backends.redis, backends.keys.lock, settings.sync_lock_ttl)
        try:
            async with lock.hold():
                report = await ViewSync(store, backends.postgres, progress=batch_done).run_once()
        except LockBusy as exc:
            print(f"kaleido sync: {exc}; a sync is already running", file=sys.stderr)
            return 1
    if as_json:
        print_json("sync", stack, {"synced": True, **attrs.asdict(report)})
    else:
        print(
            f"synced {report.views} views of {report.posts} posts in {report.batches} batches"
            f" ({report.journal_views} views replayed from the journal)"
        )
    return 0


def _console() -> Console:
    # Resolved at call time so that output goes to whatever sys.stdout is then; piped output
    # gets wide lines rather than names cut to fit 80 columns. No markup: cells hold data
    # (error texts of dead letters) whose brackets must print as they are.
    width = None if sys.stdout.isatty() else 200
    return Console(file=sys.stdout, highlight=False, markup=False, width=width)


async def doctor(stack: Stack, dlq_interval: float, as_json: bool) -> int:
    """Check the deployment's Redis and PostgreSQL; exit 1 if any check finds a problem."""
    settings = stack.settings
    require_urls(settings, "doctor")
    async with open_backends(settings) as backends:
        findings = await diagnose(backends, dlq_interval)
    if as_json:
        print_json("doctor", stack, {"findings": [f.as_json() for f in findings]})
    else:
        header = f"kaleido doctor: {redact_url(settings.redis_url)}, "
        header += redact_url(settings.database_url)
        print_report(_console(), findings, header)
    return exit_code(findings)


async def streams(stack: Stack, as_json: bool) -> int:
    """Print every stream's groups, lag, pending entries and DLQ size."""
    require_urls(stack.settings, "streams")
    async with open_backends(stack.settings) as backends:
        statuses = await read_streams(backends.redis, backends.keys)
    if as_json:
        print_json("streams", stack, {"streams": [s.as_json() for s in statuses]})
        return 0
    table = Table(title="streams", title_justify="left")
    for column in ("stream", "length", "group", "lag", "pending", "oldest pending", "consumers"):
        table.add_column(column, no_wrap=column != "consumers")
    table.add_column("dlq")
    for s in statuses:
        dlq = str(s.dlq_size) if s.inbound else "—"
        if not s.groups:
            table.add_row(s.stream, str(s.length), "(none)", "—", "—", "—", "—", dlq)
        for g in s.groups:
            age = "—" if g.oldest_pending_age is None else f"{g.oldest_pending_age:.0f} s"
            consumers = ", ".join(f"{c.name} idle {c.idle_seconds:.0f} s" for c in g.consumers)
            lag = "?" if g.lag is None else str(g.lag)
            table.add_row(
                s.stream, str(s.length), g.name, lag, str(g.pending), age, consumers or "—", dlq
            )
    _console().print(table)
    return 0


async def dlq_command(
    stack: Stack, action: str, stream: str, *, count: int = 100,
    ids: Sequence[str] | None = None, as_json: bool = False, limit: int = REPLAY_LIMIT,
) -> int:  # fmt: skip
    """`kaleido dlq list|replay|purge STREAM`; a replay without ids puts back at most `limit`
    of the dead letters there when it starts, with a progress line per page (at most one a
    second)."""
    require_urls(stack.settings, "dlq")
    command = f"dlq {action}"
    async with open_backends(stack.settings) as backends:
        redis, keys = backends.redis, backends.keys
        if action == "list":
            letters = await dlq_list(redis, keys, stream, count)
            size = await dlq_size(redis, keys, stream)
        elif action == "replay":
            if ids:
                new_ids, more = await dlq_replay(redis, keys, stream, ids), False
            else:
                total = min(limit, await dlq_size(redis, keys, stream))
                progress = Progress("kaleido dlq replay")

                def replayed(n: int) -> None:
                    progress.update(f"{n} of {total} replayed")

                report = await dlq_replay_all(redis, keys, stream, limit=limit, progress=replayed)
                new_ids, more = report.new_ids, report.more
            result = {"stream": stream, "replayed": len(new_ids), "newIds": new_ids, "more": more}
            if as_json:
                print_json(command, stack, result)
                return 0
            print(f"replayed {len(new_ids)} dead letters onto {stream}")
            if more:
                print(f"more dead letters remain: run `kaleido dlq replay {stream}` again")
            return 0
        else:
            purged = await dlq_purge(redis, keys, stream)
            if as_json:
                print_json(command, stack, {"stream": stream, "purged": purged})
            else:
                print(f"purged {purged} dead letters of {stream}")
            return 0
    if as_json:
        entries = [attrs.asdict(d) for d in letters]
        print_json(command, stack, {"stream": stream, "size": size, "entries": entries})
        return 0
    table = Table(title=f"{stream} dead letters: {size} (showing {len(letters)})")
    for column in ("dlq id", "original id", "error type", "deliveries", "failed at", "error"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            d.dlq_id, d.original_id, d.error_type, str(d.deliveries), d.failed_at, d.error
        )
    _console().print(table)
    return 0


async def top(settings: Settings, url: str | None, refresh: float, once: bool) -> int:
    """The live dashboard, until Ctrl-C; `url`: the service's ops listener, for its metrics."""
    require_urls(settings, "top")
    async with open_backends(settings) as backends:
        # Ctrl-C cancels the loop, so the last frame stays and the clients close in order.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                await run_top(backends, url, refresh=refresh, once=once, console=_console())
                nursery.cancel_scope.cancel()
    return 0


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return
