"""Soak: the service's resident memory under steady view traffic (`make soak MINUTES=30`).

`python run.py run` in its own process on a private Redis and PostgreSQL, driven over HTTP at
`--rate` unique views per second (default 5,000) in requests of `--batch` views (200), every
view a new (user, post) pair, with a sync every `--sync-interval` seconds (60). The service's
RSS (/proc/PID/status VmRSS) is sampled every SAMPLE_EVERY seconds. The verdict: over the last
`--window` minutes (10, or the second half of a shorter run) RSS stays within `--limit` MB (2).
The baseline (same run) is the RSS at the end of the warm-up: the ratio is last / baseline.

With `--trace`, the service runs with KALEIDO_TRACEMALLOC (kaleido.ops.memtrace): it dumps a
tracemalloc snapshot every minute, and the report lists the allocation sites that grew most
between the snapshot at the start of the window and the last one. Tracing costs memory of its
own, so RSS figures taken with it are not the service's: run once with `--trace` to name what
grows, once without to measure.

Numbers from a busy, shared machine are noisy (the load driver shares its cores with the
service, Redis and PostgreSQL): the report says how far the driver fell behind its schedule.

Run: `python -m benchmarks.soak --minutes 5 [--trace]`, or `make soak MINUTES=5 [ARGS=--trace]`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import attrs
import orjson
import trio

from kaleido.gateways import open_backends
from kaleido.migrate import migrate
from kaleido.ops.memtrace import ENV as TRACE_ENV
from kaleido.ops.memtrace import EVERY_ENV as TRACE_EVERY_ENV
from kaleido.settings import Settings

from .bench_http import python_process, wait_ready
from .common import ROOT, free_port, private_stack

SAMPLE_EVERY = 10.0  # seconds between RSS samples
WARMUP = 60.0  # seconds of load before the baseline sample (caches, pools, first sync)
POSTS = 20_000  # posts that exist; views spread over them
CONNECTIONS = 16  # keep-alive connections the driver sends on (requests in flight at most)
TOP = 15  # allocation sites listed


@attrs.define
class Load:
    """What the driver did."""

    sent: int = 0  # requests
    views: int = 0
    statuses: dict[int, int] = attrs.Factory(dict)
    latencies: list[float] = attrs.Factory(list)
    behind: float = 0.0  # the largest lag behind schedule, seconds
    errors: int = 0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def _request(stream: trio.SocketStream, port: int, body: bytes) -> int:
    head = (
        f"POST /v1/views HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the service closed the connection")
        buffer += chunk
    header, rest = buffer.split(b"\r\n\r\n", 1)
    lines = header.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the service closed the connection mid-answer")
        rest += chunk
    return status


async def drive(port: int, rate: int, batch: int, until: float, load: Load) -> None:
    """Send request k at start + k / (rate / batch), on CONNECTIONS connections; a late
    connection sends at once (catching up), so the mean rate holds while the service keeps up."""
    per_second = rate / batch
    start = trio.current_time()
    ticket = 0
    base = int(time.time()) * 1_000_000  # user ids unique across runs on the same servers

    async def connection() -> None:
        nonlocal ticket
        stream: trio.SocketStream | None = None
        while True:
            k = ticket
            ticket += 1
            due = start + k / per_second
            if due >= until or trio.current_time() >= until:  # behind schedule: stop anyway
                break
            await trio.sleep_until(due)
            load.behind = max(load.behind, trio.current_time() - due)
            views = [
                {"userId": base + k * batch + i, "postId": (k * 7919 + i * 104729) % POSTS + 1}
                for i in range(batch)
            ]
            body = orjson.dumps(views)
            began = trio.current_time()
            try:
                if stream is None:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                status = await _request(stream, port, body)
            except (OSError, ConnectionError, trio.BrokenResourceError):
                load.errors += 1
                stream = None
                continue
            load.latencies.append(trio.current_time() - began)
            load.sent += 1
            load.statuses[status] = load.statuses.get(status, 0) + 1
            if status == 202:
                load.views += batch
        if stream is not None:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(CONNECTIONS):
            nursery.start_soon(connection)


async def sample(pid: int, until: float, samples: list[tuple[float, int]]) -> None:
    start = trio.current_time()
    while trio.current_time() < until:
        samples.append((trio.current_time() - start, rss_kb(pid)))
        await trio.sleep(SAMPLE_EVERY)
    samples.append((trio.current_time() - start, rss_kb(pid)))


def slope_mb_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (MB) over time (minutes)."""
    if len(points) < 2:
        return 0.0
    xs = [t / 60 for t, _ in points]
    ys = [kb / 1024 for _, kb in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def growth_report(folder: Path, window_start: float, every: float) -> list[str]:
    """The allocation sites that grew most between the snapshot at `window_start` (seconds
    after the service started tracing) and the last one."""
    snaps = sorted(folder.glob("*.snap"))
    if len(snaps) < 2:
        return [f"tracemalloc: {len(snaps)} snapshot(s), need two"]
    first_index = min(len(snaps) - 2, max(0, math.floor(window_start / every)))
    first = tracemalloc.Snapshot.load(str(snaps[first_index]))
    last = tracemalloc.Snapshot.load(str(snaps[-1]))
    noise = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "*/linecache.py"),
    ]
    first, last = first.filter_traces(noise), last.filter_traces(noise)
    total = sum(s.size for s in last.statistics("filename"))
    lines = [
        f"tracemalloc: snapshots {snaps[first_index].name} → {snaps[-1].name}; traced now "
        f"{total / 1048576:.1f} MB; top growth by line:"
    ]
    for stat in last.compare_to(first, "lineno")[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"  {stat.size_diff / 1024:+9.1f} KB {stat.count_diff:+8d} blocks  "
            f"{_short(frame.filename)}:{frame.lineno}"
        )
    lines.append("top growth by traceback (the biggest three):")
    for stat in last.compare_to(first, "traceback")[:3]:
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KB {stat.count_diff:+8d} blocks")
        lines += [f"      {_short(f.filename)}:{f.lineno}" for f in stat.traceback]
    return lines


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def soak(args: argparse.Namespace, settings: Settings, trace: Path | None) -> int:
    async with open_backends(settings) as backends:  # the posts the views are for
        await migrate(backends.postgres)
        await backends.postgres.execute(
            "INSERT INTO posts (post_id, user_id) SELECT p, 1 FROM generate_series(1, $1) AS p "
            "ON CONFLICT DO NOTHING",
            POSTS,
        )
    port = free_port()
    env = {
        **os.environ,
        "KALEIDO_REDIS_URL": str(settings.redis_url),
        "KALEIDO_DATABASE_URL": str(settings.database_url),
        "KALEIDO_HTTP_BIND": f"127.0.0.1:{port}",
        "KALEIDO_OPS_BIND": f"127.0.0.1:{free_port()}",
        "KALEIDO_SYNC_INTERVAL": str(args.sync_interval),
        "KALEIDO_LOG_FORMAT": "json",
        "KALEIDO_WORKERS": "1",
    }
    every = 60.0
    if trace is not None:
        env[TRACE_ENV], env[TRACE_EVERY_ENV] = str(trace), str(every)
    log = Path(args.log)
    seconds = args.minutes * 60
    window = min(args.window * 60, seconds / 2)
    with python_process([str(ROOT / "run.py"), "run"], env, log) as process:
        await wait_ready(process, port, log)
        load = Load()
        samples: list[tuple[float, int]] = []
        until = trio.current_time() + args.warmup + seconds
        print(f"soak: {args.rate} views/s in {args.batch}-view requests, {args.minutes:g} min "
              f"after {args.warmup:g} s of warm-up; sync every {args.sync_interval:g} s; "
              f"service pid {process.pid}{'; tracemalloc on' if trace else ''}",
              flush=True)  # fmt: skip
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, port, args.rate, args.batch, until, load)
            nursery.start_soon(sample, process.pid, until, samples)
            nursery.start_soon(_progress, samples, load, until)
        if process.poll() is not None:
            print(f"soak: the service exited ({process.returncode}); see {log}")
            return 1
        measured = [(t - args.warmup, kb) for t, kb in samples if t >= args.warmup - 1]
        return _report(args, load, measured, window, seconds, trace, every)


async def _progress(samples: list[tuple[float, int]], load: Load, until: float) -> None:
    while trio.current_time() < until:
        await trio.sleep(60)
        if samples:
            t, kb = samples[-1]
            print(f"  {t / 60:5.1f} min  RSS {kb / 1024:6.1f} MB  {load.views} views accepted, "
                  f"{load.errors} errors, behind ≤ {load.behind:.2f} s", flush=True)  # fmt: skip


def _report(
    args: argparse.Namespace,
    load: Load,
    measured: list[tuple[float, int]],
    window: float,
    seconds: float,
    trace: Path | None,
    every: float,
) -> int:
    baseline = measured[0][1] / 1024
    last = measured[-1][1] / 1024
    tail = [(t, kb) for t, kb in measured if t >= seconds - window]
    spread = (max(kb for _, kb in tail) - min(kb for _, kb in tail)) / 1024
    lat = sorted(load.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    print("\nsoak report (a busy shared machine: figures are noisy)")
    print(f"  load: {load.sent} requests, {load.views} views accepted "
          f"({load.views / (seconds + args.warmup):.0f}/s of {args.rate}/s asked), statuses "
          f"{dict(sorted(load.statuses.items()))}, {load.errors} connection errors, p99 "
          f"{p99:.0f} ms, the driver fell up to {load.behind:.2f} s behind")  # fmt: skip
    print("  RSS per minute (MB):", " ".join(
        f"{kb / 1024:.1f}" for t, kb in measured if round(t) % 60 < SAMPLE_EVERY))  # fmt: skip
    print(f"  baseline (after {args.warmup:g} s warm-up) {baseline:.1f} MB, last {last:.1f} MB, "
          f"ratio {last / baseline:.3f}; slope {slope_mb_per_min(measured):+.3f} MB/min overall, "
          f"{slope_mb_per_min(tail):+.3f} MB/min over the last {window / 60:g} min")  # fmt: skip
    level = spread <= args.limit
    print(f"  last {window / 60:g} min: RSS within {spread:.2f} MB "
          f"({'level' if level else 'NOT level'}: limit {args.limit:g} MB)")  # fmt: skip
    if trace is not None:
        start = max(0.0, args.warmup + seconds - window)
        for line in growth_report(trace, start, every):
            print("  " + line)
        print("  (tracemalloc was on: its own bookkeeping is in these RSS figures)")
    return 0 if level else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000, help="views per second")
    parser.add_argument("--batch", type=int, default=200, help="views per request")
    parser.add_argument("--sync-interval", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0, help="minutes judged at the end")
    parser.add_argument("--limit", type=float, default=2.0, help="MB the window may vary")
    parser.add_argument("--warmup", type=float, default=WARMUP, help="seconds before the baseline")
    parser.add_argument("--trace", action="store_true", help="tracemalloc snapshots")
    parser.add_argument("--log", default=str(ROOT / ".state" / "soak" / "service.log"))
    args = parser.parse_args(argv)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    with private_stack() as (_, settings), tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "snapshots" if args.trace else None
        return trio.run(soak, args, settings, trace)


if __name__ == "__main__":
    sys.exit(main())
