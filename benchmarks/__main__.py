"""`python -m benchmarks` (`make bench`): every scenario on one private Redis and PostgreSQL.

    python -m benchmarks                       the whole suite; writes RESULTS.md (below)
    python -m benchmarks --quick               smaller workloads (a smoke run)
    python -m benchmarks --only streams,sync   some scenarios (RESULTS.md is left alone)
    python -m benchmarks --profile --only streams
                                               profiles (benchmarks/profiles/*.txt); figures
                                               taken under a profiler are not written to
                                               RESULTS.md

Scenarios run one after the other, each on emptied servers, and every row is printed beside
its same-run baseline. Raw figures go to benchmarks/results/{scenario}.json and summary.json.
The table goes to .state/reports/benchmarks/RESULTS.md; to the tracked benchmarks/RESULTS.md
with KALEIDO_REFRESH_REPORTS=1. The docs site shows the former when it is there, else the
latter (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from . import (
    bench_cluster,
    bench_http,
    bench_overload,
    bench_streams,
    bench_sync,
    bench_views,
    bench_workers,
)
from .common import (
    ROOT,
    Outcome,
    Scenario,
    log_as_deployed,
    machine,
    print_table,
    private_stack,
    run_scenarios,
    save,
    table_lines,
)

SCENARIOS: dict[str, Scenario] = {
    "ingest": bench_views.ingest,
    "latency": bench_views.latency,
    "sync": bench_sync.sync,
    "streams": bench_streams.streams,
    "http": bench_http.http,
    "overload": bench_overload.overload,
    "memory": bench_views.memory,
    "cluster": bench_cluster.cluster_ingest,
    "workers": bench_workers.workers,
    "ceiling": bench_workers.ceiling,
}
TRACKED_RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_MD = (
    TRACKED_RESULTS_MD
    if os.environ.get("KALEIDO_REFRESH_REPORTS") == "1"
    else ROOT / ".state" / "reports" / "benchmarks" / "RESULTS.md"
)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        default="",
        help=f"run only these scenarios, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the measured parts into benchmarks/profiles/ (slower figures)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.names = names
    return args


def results_markdown(outcomes: Sequence[Outcome], command: str, quick: bool) -> str:
    info = machine()
    rows = [row for outcome in outcomes for row in outcome.rows]
    missed = [r for r in rows if r.met is False]
    lines = [
        "# Benchmark results",
        "",
        f"`{command}` on {info['date_utc']}: Python {info['python']}, {info['cpus']} CPUs "
        f"({info['platform']}){', quick workloads' if quick else ''}.",
        "",
        "Figures come from a 2-core virtual machine that may run other work at the same time:",
        "absolute numbers are noisy; each row's same-run baseline and ratio are the comparable",
        "part. Redis, PostgreSQL, the load generator and the code under test share the two",
        "cores. Raw figures: `benchmarks/results/*.json` (written by every run).",
        "",
        *table_lines(rows, markdown=True),
        "",
        f"Targets: {sum(r.met is True for r in rows)} met, {len(missed)} missed; a missed row"
        " says what bounds it and which profile shows it.",
        "",
        "## How the figures are taken",
        "",
        "- One private redis-server (the repo's `redis.conf`) and PostgreSQL for the whole run",
        "  (`kaleido.devstack`, PostgreSQL with fsync, synchronous_commit and full_page_writes",
        "  off), emptied before each scenario; every baseline runs on the same servers in the",
        "  same run. Workloads and baselines are described in each `benchmarks/bench_*.py`.",
        "- Every scenario logs as deployed: JSON lines at INFO (in-process scenarios into",
        "  `benchmarks/results/bench.log`, including the consumers' `consumer.applied` line",
        "  per batch); the HTTP scenario runs the service itself (`run.py`).",
        "- Profiles: `make bench ARGS=--profile` samples the measured parts with py-spy into",
        "  `benchmarks/profiles/*.txt` (the tracker, consumers and syncer in-process, the HTTP",
        "  service by pid). Sampling slows them down, so profiled figures are never written",
        "  here.",
        "",
        "## Notes per scenario",
        "",
    ]
    for outcome in outcomes:
        lines.append(f"- **{outcome.name}** ({outcome.seconds} s)")
        lines += [f"  - {note}" for note in outcome.notes]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    log_as_deployed()
    command = "make bench" + (
        f" ARGS={shlex.quote(' '.join(sys.argv[1:]))}" if sys.argv[1:] else ""
    )
    started = time.perf_counter()
    scenarios = [(name, SCENARIOS[name]) for name in args.names]
    with private_stack() as (_, settings):
        outcomes = trio.run(run_scenarios, scenarios, args.quick, settings, args.profile)
    info = machine()
    for outcome in outcomes:
        save(outcome.name, {"machine": info, "quick": args.quick, **outcome.figures})
    rows = [row for outcome in outcomes for row in outcome.rows]
    save(
        "summary",
        {
            "machine": info,
            "command": command,
            "quick": args.quick,
            "profiled": args.profile,
            "rows": [attrs.asdict(row) for row in rows],
        },
    )
    elapsed = time.perf_counter() - started
    print_table(f"All scenarios ({elapsed:.0f} s, {info['date_utc']})", rows)
    if len(args.names) == len(SCENARIOS) and not args.profile:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(results_markdown(outcomes, command, args.quick))
        print(f"\nwrote {RESULTS_MD.relative_to(ROOT)} and benchmarks/results/*.json")
    else:
        print("\nwrote benchmarks/results/*.json (RESULTS.md is written by a full, unprofiled run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
