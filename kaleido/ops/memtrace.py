"""A diagnostic switch: `KALEIDO_TRACEMALLOC=FOLDER` makes the service trace its allocations
(tracemalloc) and dump a snapshot into FOLDER every `KALEIDO_TRACEMALLOC_EVERY` seconds
(default 60), so that what grows under a long load can be named (benchmarks/soak.py compares
the snapshots). Unset in production: nothing is traced, nothing runs.

Tracing costs CPU and memory of its own (every live block's traceback), so resident memory
measured with it on is not the service's.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import trio

from kaleido.logs import get_logger

ENV = "KALEIDO_TRACEMALLOC"
EVERY_ENV = "KALEIDO_TRACEMALLOC_EVERY"
# Frames kept per allocation: enough to see who called the allocator's caller.
FRAMES = 6

log = get_logger("kaleido.ops.memtrace")


def folder() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


async def dump_snapshots(into: Path, every: float | None = None) -> None:
    """Trace allocations and write `NNNN.snap` into `into` every `every` seconds, forever."""
    interval = every if every is not None else float(os.environ.get(EVERY_ENV, "60"))
    await trio.Path(into).mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    log.warning("memtrace.on", folder=str(into), every=interval)
    n = 0
    while True:
        snapshot = tracemalloc.take_snapshot()
        path = into / f"{n:04d}.snap"
        await trio.to_thread.run_sync(snapshot.dump, str(path))
        n += 1
        await trio.sleep(interval)
