"""The campaign's report (Markdown): faults of each kind, views and entries, lost and doubled,
recovery p50/p99, and every failure with the command that replays it."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from .campaign import RunResult, fmt, percentile
from .schedule import KINDS


def render(results: list[RunResult], redis: str, scenario: str, seconds: float) -> str:
    injected = Counter(i.fault.kind for r in results for i in r.injected if not i.error)
    errors = Counter(i.fault.kind for r in results for i in r.injected if i.error)
    recoveries = [x for r in results for x in r.recoveries]
    ready = [r.ready_after for r in results if r.ready_after is not None]
    v = [r.verdict for r in results]
    failed = [r for r in results if not r.ok]
    aof = "no persistence" if scenario == "documented-windows" else "AOF"
    where = f"a Redis Cluster (3+3, {aof})" if redis == "cluster" else f"a single Redis ({aof})"
    seeds = ", ".join(str(r.seed) for r in results[:8]) + (", ..." if len(results) > 8 else "")
    lines = [
        f"### {scenario} on {where}",
        "",
        f"{len(results)} runs in {seconds / 60:.1f} minutes, {time.strftime('%Y-%m-%d %H:%M')}; "
        f"seeds {seeds}; "
        f"workers: {dict(sorted(Counter(r.workers for r in results).items()))}.",
        "",
        "| fault | injected | could not be injected |",
        "|---|---|---|",
    ]
    for kind in KINDS:
        if injected[kind] or errors[kind]:
            lines.append(f"| {kind} | {injected[kind]} | {errors[kind]} |")
    lines += [
        f"| **all** | **{sum(injected.values())}** | {sum(errors.values())} |",
        "",
        "| what | figure |",
        "|---|---|",
        f"| views acknowledged (202 or embedded ok) | {sum(x.acknowledged for x in v)} |",
        f"| views of unknown outcome (then sent again) | {sum(x.unknown for x in v)} |",
        f"| views lost | {sum(x.lost for x in v)} |",
        f"| views doubled | {sum(x.doubled for x in v)} |",
        f"| views lost / counted again in documented windows (apart) | "
        f"{sum(x.window_lost for x in v)} / {sum(x.window_doubled for x in v)} |",
        f"| API totals differing from PostgreSQL | {sum(x.api_mismatch for x in v)} |",
        f"| stream entries written | {sum(x.entries for x in v)} |",
        f"| entries never processed | {sum(x.entries_missing for x in v)} |",
        f"| entries with a wrong or doubled effect | {sum(x.entries_wrong for x in v)} |",
        f"| entries applied out of stream order (an older result last) | "
        f"{sum(x.entries_reordered for x in v)} |",
        f"| entries pending when the checks began / drained within | "
        f"{sum(x.pending_seen for x in v)} / "
        f"{fmt(max((x.pending_drained for x in v if x.pending_drained), default=None))} |",
        f"| entries left pending / dead-lettered | {sum(x.pending for x in v)} / "
        f"{sum(x.dead_lettered for x in v)} |",
        f"| journal rows / Redis counters left | {sum(x.journal_left for x in v)} / "
        f"{sum(x.redis_left for x in v)} |",
        f"| recovery after a fault, p50 / p99 ({len(recoveries)} faults) | "
        f"{fmt(percentile(recoveries, 50))} / {fmt(percentile(recoveries, 99))} |",
        f"| ready after the last fault, worst | {fmt(max(ready) if ready else None)} |",
        f"| resident memory of a Kaleido process, max | "
        f"{max((r.rss_max for r in results), default=0) / 2**20:.0f} MB |",
        f"| runs failed | {len(failed)} of {len(results)} |",
    ]
    for r in failed:
        lines += ["", "```", r.details(), "```"]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Fault campaign report\n\n" + text)


def refresh_docs(page: Path, section: str, text: str) -> None:
    """Replace the `section` between its markers in the tracked docs page."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    body = page.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(body):
        body += f"\n{start}\n{end}\n"
    page.write_text(pattern.sub(lambda _: f"{start}\n{text}{end}", body))
