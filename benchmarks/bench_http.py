"""HTTP: `POST /v1/views` (one view per request) under wrk, beside GET /healthz, same server.

The service runs as it does in production: `python run.py` in its own process, on the bench's
Redis and PostgreSQL (KALEIDO_REDIS_URL / KALEIDO_DATABASE_URL) and a free port. wrk (one
thread, keep-alive connections) drives it; a Lua script gives every POST a fresh (userId,
postId) so each request is a counted view. A 202 is sent only once the view is in Redis, so
the POST figure includes the ingester's Redis round trip (shared by the requests in flight).

Baseline (same server, same run, same wrk settings): GET /healthz, the cheapest route: what
hypercorn + Starlette + the middleware cost by themselves. The two endpoints run in alternating
rounds; a rate is the rounds' mean, a latency percentile the worse round's.

With `--profile`, py-spy samples the server process during the POST run
(benchmarks/profiles/http-post-views.txt).

Run alone: `python -m benchmarks.bench_http [--quick]` (or `python -m benchmarks --only http`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from kaleido.gateways import Backends
from kaleido.settings import Settings

from .common import (
    ROOT,
    Context,
    Outcome,
    Row,
    free_port,
    py_spy,
    rate,
    run_alone,
    summarise_collapsed,
    write_profile,
)

SECONDS = {False: 10, True: 4}  # per endpoint, split into ROUNDS alternating rounds
ROUNDS = 2
WARMUP_SECONDS = 2
CONNECTIONS = 50
THREADS = 1
READY_TIMEOUT = 60.0
# Posts cycle below the syncer's early trigger (50 000 pending), so no sync runs meanwhile.
POSTS = 20_000

POST_SCRIPT = """
-- A fresh (userId, postId) per request: every POST is a view that counts.
local base = 0
local counter = 0
function init(args)
  base = tonumber(args[1])
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local body = string.format('{"userId": %d, "postId": %d}', base + counter,
                             counter % POSTS + 1)
  return wrk.format(nil, nil, nil, body)
end
""".replace("POSTS", str(POSTS))

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), request and error counts from `wrk --latency`."""
    out: dict[str, Any] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    out["requests_per_s"] = float(match.group(1))
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        out[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    out["requests"] = int(match.group(1)) if match else 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(match.group(1)) if match else 0
    errors = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = errors.group(1).strip() if errors else ""
    return out


def combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one endpoint as one: mean rate, summed counts, the worst of each percentile."""
    out: dict[str, Any] = {
        "requests_per_s": sum(r["requests_per_s"] for r in rounds) / len(rounds),
        "requests": sum(r["requests"] for r in rounds),
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "socket_errors": "; ".join(r["socket_errors"] for r in rounds if r["socket_errors"]),
        "rounds": rounds,
    }
    for key in rounds[0]:
        if key.endswith("_ms"):
            out[key] = max(r[key] for r in rounds)
    return out


@contextmanager
def service(
    settings: Settings, port: int, log: Path, workers: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """`python run.py` (in `workers` processes) on the bench's servers; stopped with SIGTERM
    (then SIGKILL)."""
    env = {
        **os.environ,
        "KALEIDO_REDIS_URL": str(settings.redis_url),
        "KALEIDO_DATABASE_URL": str(settings.database_url),
        "KALEIDO_HTTP_BIND": f"127.0.0.1:{port}",
        "KALEIDO_OPS_BIND": f"127.0.0.1:{free_port()}",
        "KALEIDO_SYNC_INTERVAL": "3600",
        "KALEIDO_LOG_FORMAT": "json",
        "KALEIDO_WORKERS": str(workers),
        # wrk's connections all admitted (this measures serving; refusing is bench_overload's):
        # a slot is given back just after its answer went, so a connection may hold two at once
        "KALEIDO_MAX_IN_FLIGHT": str(2 * CONNECTIONS),
        # wrk's connections all come from 127.0.0.1, and those of one run may still be closing
        # when the next run opens its own: the per-client cap (64) would refuse some of them
        "KALEIDO_MAX_CONNECTIONS_PER_CLIENT": str(4 * CONNECTIONS),
    }
    with python_process([str(ROOT / "run.py"), "run"], env, log) as process:
        yield process


@contextmanager
def python_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python ARGS` in the repository, its output to `log`; SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(
    process: subprocess.Popen[bytes], port: int, log: Path, path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = await trio.Path(log).read_text()
            raise RuntimeError(f"the service exited ({process.returncode}):\n{output}")
        if await trio.to_thread.run_sync(_ready, f"http://127.0.0.1:{port}{path}"):
            return
        await trio.sleep(0.2)
    output = await trio.Path(log).read_text()
    raise RuntimeError(f"the service was not ready within {READY_TIMEOUT} s:\n{output}")


async def wrk(url: str, seconds: int, script: Path | None = None, *args: str) -> dict[str, Any]:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if args:
        command += ["--", *args]
    done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    return {**parse_wrk(done.stdout.decode()), "command": " ".join([*command[:-1], url])}


async def pending_views(backends: Backends) -> int:
    """Every pending counter summed (the views counted in Redis and not synced yet): the
    values of each partition's counts hash."""
    keys = backends.keys
    replies = await backends.redis.pipeline(
        [("HVALS", keys.counts(q)) for q in range(keys.partitions)]
    )
    return sum(int(views) for values in replies for views in values)


async def profile_server(pid: int, seconds: int, label: str) -> None:
    """py-spy samples the server for `seconds`; a summary goes to profiles/{label}.txt."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        await trio.run_process(
            [py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "250",
             "-f", "raw", "--nolineno", "--nonblocking", "--idle", "-o", str(raw)],
            capture_stdout=True, capture_stderr=True,
        )  # fmt: skip
        write_profile(label, summarise_collapsed(raw.read_text(), f"py-spy profile of {label}"))


async def http(ctx: Context) -> Outcome:
    seconds = SECONDS[ctx.quick]
    if shutil.which("wrk") is None:
        row = Row("http", "POST /v1/views", "not run: wrk is missing (scripts/bench-deps.sh)")
        return Outcome("http", [row], {"skipped": "wrk missing"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-http-") as tmp:
        script, log = Path(tmp) / "post_views.lua", Path(tmp) / "service.log"
        script.write_text(POST_SCRIPT)
        with service(ctx.settings, port, log) as process:
            await wait_ready(process, port, log)
            await wrk(f"{base}/healthz", WARMUP_SECONDS)
            await wrk(f"{base}/v1/views", WARMUP_SECONDS, script, "1000000000")
            before = await pending_views(ctx.backends)
            # Alternating rounds, so that neither endpoint gets the quieter half of the run.
            healthz_rounds, views_rounds = [], []
            for index in range(ROUNDS):
                healthz_rounds.append(await wrk(f"{base}/healthz", seconds // ROUNDS))
                async with trio.open_nursery() as nursery:
                    if ctx.profile and index == 0:
                        label, duration = "http-post-views", seconds // ROUNDS - 1
                        nursery.start_soon(profile_server, process.pid, duration, label)
                    first_user = str(2_000_000_000 + index * 100_000_000)
                    views_rounds.append(
                        await wrk(f"{base}/v1/views", seconds // ROUNDS, script, first_user)
                    )
            counted = await pending_views(ctx.backends) - before
    healthz, views = combined(healthz_rounds), combined(views_rounds)
    accepted = views["requests"] - views["non_2xx"]
    assert views["non_2xx"] == 0, f"{views['non_2xx']} POSTs were refused"
    # wrk stops counting at its deadline; replies still in flight then were applied too.
    assert counted >= accepted, f"{accepted} views accepted, {counted} counted in Redis"
    ours, trivial = views["requests_per_s"], healthz["requests_per_s"]
    ratio = ours / trivial
    scenario = f"http, wrk {THREADS} thread × {CONNECTIONS} conns, {ROUNDS}×{seconds // ROUNDS} s"
    rows = [
        Row(
            scenario,
            "POST /v1/views (1 view/request) req/s",
            rate(ours),
            f"GET /healthz {rate(trivial)}",
            f"{ratio:.2f}×",
            "≥ 0.5×",
            ratio >= 0.5,
        ),
        Row(
            scenario,
            "POST /v1/views latency p50 / p99 (worse round)",
            f"{views['p50_ms']:.1f} / {views['p99_ms']:.1f} ms",
            f"/healthz {healthz['p50_ms']:.1f} / {healthz['p99_ms']:.1f} ms",
        ),
    ]
    figures = {"seconds": seconds, "post_views": views, "healthz": healthz, "counted": counted}
    notes = [
        f"{accepted:,} POSTs answered 202, {counted:,} views counted in Redis; "
        f"wrk, the service, Redis and PostgreSQL share the machine's cores"
    ]
    for name, result in (("POST", views), ("healthz", healthz)):
        if result["socket_errors"]:
            notes.append(f"{name}: wrk socket errors: {result['socket_errors']}")
    return Outcome("http", rows, figures, notes)


if __name__ == "__main__":
    run_alone("http", http, "--quick" in sys.argv)
