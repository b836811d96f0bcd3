"""HTTP across processes, and what bounds one process.

`workers`: `POST /v1/views` (one view per request, each a counted view) under wrk against
`run.py --workers 1` and `--workers 2`, on the bench's Redis and PostgreSQL, in alternating
rounds (a fresh service each round). The ratio is the scale-out's.

`ceiling`: the same route in one process three ways, in alternating rounds: Kaleido itself
(hypercorn's trio worker, Redis behind every reply), and the reference app
(benchmarks/reference_app.py: the same route without backends) under hypercorn's trio worker
and under uvicorn. Kaleido against the reference app on the same server is Kaleido's own
per-request cost; the reference app on the two servers is the server stack's.

Run alone: `python -m benchmarks.bench_workers [--quick]` (or `python -m benchmarks --only
workers,ceiling`).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from .bench_http import (
    CONNECTIONS,
    POST_SCRIPT,
    READY_TIMEOUT,
    THREADS,
    WARMUP_SECONDS,
    combined,
    pending_views,
    python_process,
    service,
    wait_ready,
    wrk,
)
from .common import Context, Outcome, Row, free_port, rate, run_alone

SECONDS = {False: 6, True: 3}  # per round
# Alternating rounds (a fresh service each): the two cores are shared with wrk and Redis, so a
# single round's ratio moves by ±0.15; four of each average that out.
ROUNDS = {False: 4, True: 2}
CEILING_ROUNDS = 2  # of each of three servers
WORKERS = 2  # the machine's cores


async def views_counted(ctx: Context) -> int:
    """Views counted anywhere: pending in Redis, or synced (each service syncs on its way out)."""
    synced = await ctx.backends.postgres.fetchval(
        "SELECT (SELECT coalesce(sum(view_count), 0) FROM posts)"
        " + (SELECT coalesce(sum(views), 0) FROM post_view_backlog)"
    )
    return await pending_views(ctx.backends) + int(synced)


async def wait_workers_ready(log: Path, workers: int) -> None:
    """Every worker logs `service.ready` once it serves (the supervisor's log holds them all)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if (await trio.Path(log).read_text()).count('"service.ready"') >= workers:
            return
        await trio.sleep(0.2)
    raise RuntimeError(f"{workers} workers were not ready within {READY_TIMEOUT} s")


async def measure_service(
    ctx: Context, workers: int, seconds: int, script: Path, first_user: int
) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-workers-") as tmp:
        log = Path(tmp) / "service.log"
        with service(ctx.settings, port, log, workers=workers) as process:
            await wait_ready(process, port, log)
            await wait_workers_ready(log, workers)
            url = f"http://127.0.0.1:{port}/v1/views"
            await wrk(url, WARMUP_SECONDS, script, str(first_user))
            return await wrk(url, seconds, script, str(first_user + 50_000_000))


async def workers(ctx: Context) -> Outcome:
    seconds = SECONDS[ctx.quick]
    rounds: dict[int, list[dict[str, Any]]] = {1: [], WORKERS: []}
    before = await views_counted(ctx)
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-workers-") as tmp:
        script = Path(tmp) / "post_views.lua"
        script.write_text(POST_SCRIPT)
        for index in range(ROUNDS[ctx.quick]):
            order = (1, WORKERS) if index % 2 == 0 else (WORKERS, 1)
            for n in order:
                first_user = 1_000_000_000 + (index * 10 + n) * 100_000_000
                rounds[n].append(await measure_service(ctx, n, seconds, script, first_user))
    counted = await views_counted(ctx) - before
    one, many = combined(rounds[1]), combined(rounds[WORKERS])
    for result in (one, many):
        assert result["non_2xx"] == 0, f"{result['non_2xx']} POSTs were refused"
    accepted = sum(r["requests"] for r in (one, many))  # warm-ups counted too: ≥ holds
    assert counted >= accepted, f"{accepted} views accepted, {counted} counted in Redis"
    ratio = many["requests_per_s"] / one["requests_per_s"]
    scenario = f"http, {WORKERS} workers, wrk {THREADS} thread × {CONNECTIONS} conns"
    rows = [
        Row(
            scenario,
            f"POST /v1/views req/s, --workers {WORKERS}",
            rate(many["requests_per_s"]),
            f"--workers 1 {rate(one['requests_per_s'])}",
            f"{ratio:.2f}×",
            "≥ 1.7×",
            ratio >= 1.7,
            bound="" if ratio >= 1.7 else "wrk, Redis and PostgreSQL share the two cores",
        ),
        Row(
            scenario,
            f"POST /v1/views latency p50 / p99, --workers {WORKERS}",
            f"{many['p50_ms']:.1f} / {many['p99_ms']:.1f} ms",
            f"--workers 1 {one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms",
        ),
    ]
    figures = {"seconds": seconds, "one": one, "many": many, "counted": counted}
    notes = [
        f"{ROUNDS[ctx.quick]} rounds of {seconds} s each, alternating; every POST a new "
        f"counted view ({counted:,} counted in Redis); wrk, the workers, Redis and PostgreSQL "
        "share the machine's cores"
    ]
    return Outcome("workers", rows, figures, notes)


# ---------------------------------------------------------------------- one process's ceiling


@contextmanager
def reference_server(kind: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The reference app under `uvicorn` or hypercorn's trio worker (`hypercorn-trio`)."""
    app = "benchmarks.reference_app:app"
    if kind == "uvicorn":
        command = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"]  # fmt: skip
    else:
        command = ["-m", "hypercorn", "--worker-class", "trio", "--bind", f"127.0.0.1:{port}",
                   app]  # fmt: skip
    with python_process(command, {**os.environ}, log) as process:
        yield process


async def measure_reference(kind: str, seconds: int, script: Path) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-ceiling-") as tmp:
        log = Path(tmp) / "server.log"
        with reference_server(kind, port, log) as process:
            await wait_ready(process, port, log, path="/healthz")
            url = f"http://127.0.0.1:{port}/v1/views"
            await wrk(url, WARMUP_SECONDS, script, "1")
            return await wrk(url, seconds, script, "1")


async def ceiling(ctx: Context) -> Outcome:
    if importlib.util.find_spec("uvicorn") is None:
        row = Row("http ceiling", "one process", "not run: uvicorn is missing (bench extra)")
        return Outcome("ceiling", [row], {"skipped": "uvicorn missing"})
    seconds = SECONDS[ctx.quick]
    kinds = ("kaleido", "hypercorn-trio", "uvicorn")
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-ceiling-") as tmp:
        script = Path(tmp) / "post_views.lua"
        script.write_text(POST_SCRIPT)
        for index in range(CEILING_ROUNDS):
            for kind in kinds if index % 2 == 0 else tuple(reversed(kinds)):
                if kind == "kaleido":
                    first_user = 3_000_000_000 + index * 100_000_000
                    result = await measure_service(ctx, 1, seconds, script, first_user)
                else:
                    result = await measure_reference(kind, seconds, script)
                assert result["non_2xx"] == 0, f"{kind}: {result['non_2xx']} POSTs refused"
                rounds[kind].append(result)
    rate_of = {k: combined(r)["requests_per_s"] for k, r in rounds.items()}
    own = rate_of["kaleido"] / rate_of["hypercorn-trio"]
    stack = rate_of["hypercorn-trio"] / rate_of["uvicorn"]
    whole = rate_of["kaleido"] / rate_of["uvicorn"]
    scenario = f"http ceiling, one process, wrk {THREADS} thread × {CONNECTIONS} conns"
    rows = [
        Row(
            scenario,
            "POST /v1/views req/s: Kaleido (hypercorn trio, Redis behind each reply)",
            rate(rate_of["kaleido"]),
            f"uvicorn, reference app {rate(rate_of['uvicorn'])}",
            f"{whole:.2f}×",
            "report",
        ),
        Row(
            scenario,
            "reference app req/s on hypercorn's trio worker (the server stack's share)",
            rate(rate_of["hypercorn-trio"]),
            f"uvicorn, reference app {rate(rate_of['uvicorn'])}",
            f"{stack:.2f}×",
            "report",
        ),
        Row(
            scenario,
            "Kaleido's own share: Kaleido / reference app, both on hypercorn trio",
            f"{own:.2f}×",
            "1.00× would be no cost of Kaleido's own",
            f"{own:.2f}×",
            "≥ 0.7×",
            own >= 0.7,
        ),
    ]
    figures = {"seconds": seconds, "rounds": rounds, "rates": rate_of}
    notes = [
        "reference app: benchmarks/reference_app.py, the same route and body validation "
        "without backends; profile of the real route: benchmarks/profiles/http-post-views.txt "
        "(`python -m benchmarks --profile --only http`)"
    ]
    return Outcome("ceiling", rows, figures, notes)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    run_alone("workers", workers, quick)
    run_alone("ceiling", ceiling, quick)
