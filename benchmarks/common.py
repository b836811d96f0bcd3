"""Shared benchmark plumbing: a private Redis and PostgreSQL, result tables and JSON files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kaleido.devstack import DevStack, dev_stack
from kaleido.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@contextmanager
def private_stack(**redis_overrides: str) -> Iterator[tuple[DevStack, Settings]]:
    """A private Redis (the repo's redis.conf, plus overrides) and PostgreSQL for one run."""
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with dev_stack(
            Path(tmp), ROOT / "redis.conf", fast=True, redis_overrides=redis_overrides
        ) as stack:
            yield stack, Settings(redis_url=stack.redis_url, database_url=stack.database_url)


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    print(f"{'measure'.ljust(width)}  {'value':>16}  {'baseline / ratio':>28}")
    for name, value, ratio in rows:
        print(f"{name.ljust(width)}  {value:>16}  {ratio:>28}")


def save(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return path
