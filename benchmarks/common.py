"""Shared benchmark plumbing: a private Redis and PostgreSQL, result rows, tables and JSON files."""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from kaleido.devstack import DevStack, dev_stack
from kaleido.gateways import Backends, open_backends
from kaleido.logs import configure_logging
from kaleido.migrate import migrate
from kaleido.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROFILES = ROOT / "benchmarks" / "profiles"


@contextmanager
def private_stack(**redis_overrides: str) -> Iterator[tuple[DevStack, Settings]]:
    """A private Redis (the repo's redis.conf, plus overrides) and PostgreSQL for one run."""
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with dev_stack(
            Path(tmp), ROOT / "redis.conf", fast=True, redis_overrides=redis_overrides
        ) as stack:
            # KALEIDO_REDIS_SCRIPTS=eval measures the EVALSHA mode against the default FCALL.
            scripts = os.environ.get("KALEIDO_REDIS_SCRIPTS", "functions")
            yield (
                stack,
                Settings(
                    redis_url=stack.redis_url,
                    database_url=stack.database_url,
                    redis_scripts=scripts,
                ),
            )


@attrs.define
class Context:
    """What a scenario gets: the run's servers, open clients and the run's size."""

    backends: Backends
    settings: Settings
    quick: bool
    # Profile the measured parts (`profiled`), writing benchmarks/profiles/{label}.txt.
    profile: bool = False

    async def reset(self) -> None:
        """Empty Redis and the tables benchmarks write, so scenarios do not see each other."""
        await self.backends.redis.execute("FLUSHALL")
        await self.backends.postgres.execute(
            "TRUNCATE posts, post_view_backlog, view_sync_batches, media_ai_insights,"
            " media_detected_faces, processed_messages, view_journal, outbox,"
            " read_model_face_search, read_model_recommendations_knn,"
            " read_model_feed_personalized, post_aggregations, post_insights CASCADE"
        )

    @contextmanager
    def profiled(self, label: str) -> Iterator[None]:
        """While the block runs, py-spy samples this process (if profiling) and a summary goes
        to benchmarks/profiles/{label}.txt.

        Every trio task and the trio-asyncio loop run on the main thread; `--native` shows the
        compiled parts too (asyncpg's encoders, hiredis). Time spent waiting on Redis or
        PostgreSQL shows as the event loop's `epoll` wait (`--idle`).
        """
        if not self.profile:
            yield
            return
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "stacks.txt"
            spy = subprocess.Popen(
                [py_spy(), "record", "-p", str(os.getpid()), "-r", "200", "-f", "raw",
                 "--nolineno", "--native", "--idle", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached
            try:
                yield
            finally:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
                text = raw.read_text() if raw.exists() else ""
            summary = summarise_collapsed(
                text, f"py-spy profile of {label}", skip="Context.profiled"
            )  # that frame is the profiler's own start-up wait
            write_profile(label, summary)


def py_spy() -> str:
    """py-spy from the bench extra (beside this Python), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def write_profile(label: str, text: str) -> None:
    PROFILES.mkdir(parents=True, exist_ok=True)
    path = PROFILES / f"{label}.txt"
    path.write_text(text)
    print(f"  profile: {path.relative_to(ROOT)}")


@attrs.define
class Row:
    """One line of the summary table."""

    scenario: str
    measure: str
    value: str
    baseline: str = ""  # the same-run baseline and its figure
    ratio: str = ""
    target: str = ""
    met: bool | None = None  # None: reported, no target
    bound: str = ""  # when missed: what bounds it, and the profile that shows it


@attrs.define
class Outcome:
    """What one scenario measured: rows for the table, raw figures for JSON, notes to print."""

    name: str
    rows: list[Row]
    figures: dict[str, Any]
    notes: list[str] = attrs.Factory(list)
    seconds: float = 0.0


Scenario = Callable[[Context], Awaitable[Outcome]]


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


COLUMNS = ("scenario", "measure", "value", "baseline (same run)", "ratio", "target", "")


def table_lines(rows: Sequence[Row], *, markdown: bool = False) -> list[str]:
    cells = [
        (
            r.scenario,
            r.measure,
            r.value,
            r.baseline,
            r.ratio,
            r.target,
            verdict(r.met) + (f": {r.bound}" if r.met is False and r.bound else ""),
        )
        for r in rows
    ]
    if markdown:
        out = ["| " + " | ".join(COLUMNS[:-1]) + " | verdict |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return out
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    line = "  ".join
    out = [line(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))]
    out.append(line("-" * w for w in widths))
    out += [line(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return out


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    for text in table_lines(rows):
        print(text.rstrip())


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def save(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str))
    return path


async def run_scenarios(
    scenarios: Sequence[tuple[str, Scenario]],
    quick: bool,
    settings: Settings,
    profile: bool = False,
) -> list[Outcome]:
    """Run scenarios one after the other on one stack, each starting from empty servers."""
    outcomes = []
    async with open_backends(settings) as backends:
        await migrate(backends.postgres)
        context = Context(backends, settings, quick, profile)
        for name, scenario in scenarios:
            await context.reset()
            print(f"[{time.strftime('%H:%M:%S')}] {name} …", flush=True)
            started = time.perf_counter()
            outcome = await scenario(context)
            outcome.seconds = round(time.perf_counter() - started, 1)
            print_table(f"{name} ({outcome.seconds} s)", outcome.rows)
            for note in outcome.notes:
                print(f"  note: {note}")
            outcomes.append(outcome)
    return outcomes


_LOG_FILES: list[TextIO] = []  # open for the whole run: a closed file would fail a log line


def log_as_deployed() -> Path:
    """JSON lines at INFO, as the service logs, into a file (so that every per-entry line is
    rendered and written, as in production, without burying the tables)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "bench.log"
    _LOG_FILES.append(path.open("w"))  # closed when the process ends
    configure_logging("json", logging.INFO, stream=_LOG_FILES[-1])
    return path


def run_alone(name: str, scenario: Scenario, quick: bool = False) -> Outcome:
    """`python -m benchmarks.bench_x`: one scenario on its own private stack."""
    log_as_deployed()
    with private_stack() as (_, settings):
        [outcome] = trio.run(run_scenarios, [(name, scenario)], quick, settings, False)
    print(f"wrote {save(name, {'machine': machine(), **outcome.figures})}")
    return outcome


def summarise_collapsed(raw: str, title: str, top: int = 45, skip: str = "") -> str:
    """A text summary of collapsed stacks (`py-spy record -f raw`): the functions with the most
    samples on top of the stack (self) and anywhere in it (total). Stacks through a frame
    whose text contains `skip` are left out."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or (skip and skip in stack):
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    lines = [
        f"# {title} ({machine()['date_utc']})",
        f"# {samples} samples of wall-clock time, idle included: epoll_wait is the event loop",
        "# waiting on Redis/PostgreSQL (or on requests). Sampling slows the process down; the",
        "# shares, not the speed, are what this shows.",
        "",
    ]
    for name, table in (("self", own), ("total (inclusive)", total)):
        lines.append(f"## Top {top} functions by {name} samples")
        ranked = sorted(table.items(), key=lambda item: -item[1])[:top]
        lines += [f"{100 * n / max(1, samples):6.1f}%  {n:7d}  {frame}" for frame, n in ranked]
        lines.append("")
    return "\n".join(lines)
