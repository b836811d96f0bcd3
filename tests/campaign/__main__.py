"""`make torture`: the fault campaign from the command line.

    python -m tests.campaign [--scenario mixed] [--redis single|cluster] [--minutes M]
        [--runs N] [--seed S] [--faults 1,4,7|none] [--shrink] [--report PATH] [--refresh]

Random seeds until `--minutes` or `--runs` is reached (one run by default); `--seed` replays a
seed (its schedule and traffic), `--faults` only those faults of its schedule, `--shrink`
looks for the smallest subset of a failing schedule that still fails. Every seed is printed;
the report goes to `--report` (default .state/campaign/REPORT.md, untracked) and, with
`--refresh`, into docs/campaign-report.md too. Exit status 1 when a run failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import trio

from ..conftest import REPO
from .campaign import SCENARIOS, RunResult, run_guarded, shrink
from .report import refresh_docs, render, write
from .stack import Stack

DOCS_PAGE = REPO / "docs" / "campaign-report.md"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.campaign")
    p.add_argument("--scenario", default="mixed", choices=sorted(SCENARIOS))
    p.add_argument("--redis", default="single", choices=("single", "cluster"))
    p.add_argument("--minutes", type=float, default=0.0)
    p.add_argument("--runs", type=int, default=0)
    p.add_argument("--seed", type=int)
    p.add_argument("--faults", help="indexes of the schedule to keep (comma-separated, or none)")
    p.add_argument("--shrink", action="store_true")
    p.add_argument("--report", type=Path, default=REPO / ".state" / "campaign" / "REPORT.md")
    p.add_argument("--refresh", action="store_true", help="also rewrite docs/campaign-report.md")
    return p.parse_args(argv)


def indexes(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    if text == "none":
        return []
    return [int(x) for x in text.split(",")]


async def main(args: argparse.Namespace) -> int:
    scenario = SCENARIOS[args.scenario]
    state = REPO / ".state" / "campaign"
    state.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{args.redis}-", dir=state))
    deadline = time.monotonic() + args.minutes * 60
    runs = args.runs or (0 if args.minutes else 1)
    results: list[RunResult] = []
    started = time.monotonic()
    print(f"campaign: {scenario.name} on {args.redis}; logs in {workdir}", flush=True)
    async with trio.open_nursery() as nursery:
        stack = Stack(args.redis, workdir / "stack", seed=args.seed or 0, aof=scenario.aof)
        (workdir / "stack").mkdir()
        await stack.start(nursery)
        try:
            while (not runs or len(results) < runs) and (
                not args.minutes or time.monotonic() < deadline
            ):
                seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3))
                print(f"seed {seed}: running", flush=True)
                result = await run_guarded(
                    stack, scenario, seed, workdir / "runs", indexes(args.faults)
                )
                results.append(result)
                if not result.injected:  # it did not complete: start on fresh backends
                    stack.stop()
                    stack = Stack(
                        args.redis, workdir / f"stack-{len(results)}", seed=seed, aof=scenario.aof
                    )
                    stack.dir.mkdir()
                    await stack.start(nursery)
                print(result.details() if not result.ok else result.summary(), flush=True)
                for note in result.verdict.notes if result.ok else ():
                    print(f"note: {note}", flush=True)
                if not result.ok and args.shrink:

                    async def replay(
                        subset: list[int], seed: int = seed, stack: Stack = stack
                    ) -> RunResult:
                        print(f"shrinking: replaying faults {subset}", flush=True)
                        return await run_guarded(stack, scenario, seed, workdir / "runs", subset)

                    smallest = await shrink(result, replay)
                    faults = ",".join(map(str, smallest)) or "none"
                    print(
                        f"smallest failing schedule: make torture SEED={seed} "
                        f"SCENARIO={scenario.name} REDIS={args.redis} FAULTS={faults}",
                        flush=True,
                    )
        finally:
            stack.stop()
            nursery.cancel_scope.cancel()
    text = render(results, args.redis, scenario.name, time.monotonic() - started)
    write(args.report, text)
    print(f"report: {args.report}")
    if args.refresh:
        refresh_docs(DOCS_PAGE, f"{scenario.name}-{args.redis}", text)
        print(f"report: {DOCS_PAGE}")
    failed = [r for r in results if not r.ok]
    print(f"{len(results)} runs, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    # SIGTERM (a timeout, make interrupted) cleans up like Ctrl-C: no service left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(trio.run(main, parse(sys.argv[1:])))
