"""Overload: one worker under twice the load it is sized for answers 503 quickly, and the
requests it accepts stay fast.

The service runs as in production (`python run.py`, one worker, its default in-flight cap
`Settings.max_in_flight`). Clients in this process send `POST /v1/views` back to back on keep-
alive connections (every request a new counted view) and time each request with its answer's
status, in phases that alternate within the run:

- sized: as many clients as the worker handles at once (max_in_flight): nothing is refused;
  its p99 is the baseline;
- 2×: twice as many clients; a client refused with 503 waits the answer's `Retry-After`
  before its next request, as HTTP clients do;
- 2×, ignoring Retry-After (reported, no target): refused clients come straight back, the
  worst case: a refusal is cheaper than a request, not free.

The clients are raw sockets on trio (a few tens of microseconds per request), so that one
process can time every request; they share the two cores with the service, Redis and
PostgreSQL.

Run alone: `python -m benchmarks.bench_overload [--quick]` (or `python -m benchmarks --only
overload`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

from kaleido.settings import Settings

from .bench_http import python_process, wait_ready
from .common import ROOT, Context, Outcome, Row, free_port, percentile, rate, run_alone

SECONDS = {False: 6, True: 3}  # per phase and round
ROUNDS = 2
RETRY_AFTER = 1.0  # seconds: what the service's 503 says
TARGET_REFUSAL_MS = 100.0
TARGET_P99_RATIO = 2.0


@attrs.define
class Samples:
    """The sampler's requests: (status, seconds) each."""

    outcomes: list[tuple[int, float]] = attrs.Factory(list)

    def latencies(self, status: int) -> list[float]:
        return sorted(ms for s, ms in self.outcomes if s == status)

    def p99(self, status: int) -> float:
        return percentile(self.latencies(status), 0.99)


async def _read_response(stream: trio.SocketStream, buffer: bytearray) -> int:
    """One response off a keep-alive connection (Content-Length framed): its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError("closed")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError("closed")
        body += chunk
    buffer[:] = body[length:]
    return status


async def client(
    port: int, first_user: int, until: float, samples: Samples, honour_retry_after: bool
) -> None:
    """One client: POST /v1/views back to back until `until` (trio clock)."""
    user = first_user
    while trio.current_time() < until:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        try:
            while trio.current_time() < until:
                user += 1
                body = b'{"userId": %d, "postId": %d}' % (user, user % 20_000 + 1)
                request = (
                    b"POST /v1/views HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                started = time.perf_counter()
                await stream.send_all(request)
                status = await _read_response(stream, buffer)
                samples.outcomes.append((status, (time.perf_counter() - started) * 1000))
                if status == 503 and honour_retry_after:
                    await trio.sleep(RETRY_AFTER)
        except trio.BrokenResourceError:
            samples.outcomes.append((0, 0.0))  # a connection the server closed: reconnect
        finally:
            await stream.aclose()


async def phase(
    port: int, clients: int, seconds: int, user: int, honour_retry_after: bool = True
) -> tuple[Samples, float]:
    """`clients` clients for `seconds`; their samples, and the seconds it took."""
    samples = Samples()
    started = trio.current_time()
    until = started + seconds
    async with trio.open_nursery() as nursery:
        for index in range(clients):
            nursery.start_soon(client, port, user + index * 1_000_000, until, samples,
                               honour_retry_after)  # fmt: skip
    return samples, trio.current_time() - started


async def overload(ctx: Context) -> Outcome:
    seconds = SECONDS[ctx.quick]
    sized = Settings().max_in_flight
    doubled = 2 * sized
    port = free_port()
    env = {
        **os.environ,
        "KALEIDO_REDIS_URL": str(ctx.settings.redis_url),
        "KALEIDO_DATABASE_URL": str(ctx.settings.database_url),
        "KALEIDO_HTTP_BIND": f"127.0.0.1:{port}",
        "KALEIDO_OPS_BIND": f"127.0.0.1:{free_port()}",
        "KALEIDO_SYNC_INTERVAL": "3600",
        "KALEIDO_LOG_FORMAT": "json",
        # every client here is 127.0.0.1: the per-client connection cap would refuse them
        "KALEIDO_MAX_CONNECTIONS_PER_CLIENT": str(4 * doubled),
    }
    phases = {"sized": (sized, True), "2x": (doubled, True), "2x-ignoring": (doubled, False)}
    found: dict[str, list[tuple[Samples, float]]] = {name: [] for name in phases}
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-overload-") as tmp:
        log = Path(tmp) / "service.log"
        with python_process([str(ROOT / "run.py"), "run"], env, log) as process:
            await wait_ready(process, port, log)
            await phase(port, sized, 2, 1_000_000_000)  # warm-up
            for index in range(ROUNDS):
                for offset, (name, (clients, honour)) in enumerate(phases.items()):
                    user = 2_000_000_000 + (index * 3 + offset) * 100_000_000
                    found[name].append(await phase(port, clients, seconds, user, honour))
    merged = {name: _merge(rounds) for name, rounds in found.items()}
    base, over, worst = merged["sized"], merged["2x"], merged["2x-ignoring"]
    base_p99, over_p99 = base.p99(202), over.p99(202)
    refused_p99, refused = over.p99(503), len(over.latencies(503))
    ratio = over_p99 / base_p99
    scenario = f"overload, one worker, max_in_flight {sized}, {ROUNDS}×{seconds} s per phase"
    rows = [
        Row(scenario, f"503 latency p99 at 2× ({doubled} clients)", f"{refused_p99:.1f} ms",
            f"{refused:,} 503s", "", f"≤ {TARGET_REFUSAL_MS:g} ms",
            refused > 0 and refused_p99 <= TARGET_REFUSAL_MS),
        Row(scenario, "accepted (202) latency p99: 2× / sized", f"{over_p99:.1f} ms",
            f"sized ({sized} clients) {base_p99:.1f} ms", f"{ratio:.2f}×",
            f"≤ {TARGET_P99_RATIO:g}×", ratio <= TARGET_P99_RATIO),
        Row(scenario, "req/s answered 202: 2× / sized", rate(over.accepted_per_s),
            f"sized {rate(base.accepted_per_s)}",
            f"{over.accepted_per_s / base.accepted_per_s:.2f}×"),
        Row(scenario, "2× ignoring Retry-After: 503 p99 / 202 p99 (202 req/s)",
            f"{worst.p99(503):.1f} / {worst.p99(202):.1f} ms",
            f"sized 202 p99 {base_p99:.1f} ms", f"{worst.p99(202) / base_p99:.2f}×",
            "report"),
    ]  # fmt: skip
    figures = {
        name: {
            "accepted_per_s": m.accepted_per_s,
            "answered": {str(s): len(m.latencies(s)) for s in (202, 503, 0)},
            "p50_ms": {str(s): percentile(m.latencies(s), 0.5) for s in (202, 503)},
            "p99_ms": {str(s): m.p99(s) for s in (202, 503)},
            "max_ms": {str(s): max(m.latencies(s), default=0.0) for s in (202, 503)},
        }
        for name, m in merged.items()
    }
    notes = [
        f"sized: {sized} clients; 2×: {doubled}, refused ones waiting Retry-After ({RETRY_AFTER:g}"
        f" s); at 2× {refused:,} of {len(over.outcomes):,} requests were refused, "
        f"{len(worst.latencies(503)):,} of {len(worst.outcomes):,} when ignoring Retry-After; "
        "the clients, the service, Redis and PostgreSQL share the cores"
    ]
    return Outcome("overload", rows, figures, notes)


@attrs.define
class Merged(Samples):
    accepted_per_s: float = 0.0


def _merge(rounds: list[tuple[Samples, float]]) -> Merged:
    outcomes = [o for samples, _ in rounds for o in samples.outcomes]
    elapsed = sum(seconds for _, seconds in rounds)
    accepted = sum(1 for status, _ in outcomes if status == 202)
    return Merged(outcomes, accepted / elapsed)


if __name__ == "__main__":
    run_alone("overload", overload, "--quick" in sys.argv)
