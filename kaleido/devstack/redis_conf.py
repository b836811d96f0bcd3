"""The repository's redis.conf, which the private Redis servers include."""

from __future__ import annotations

from pathlib import Path

# It sits beside run.py, two folders above this one.
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_redis_conf() -> Path | None:
    """The repository's redis.conf; None for an installed package without it (the servers
    then run on redis-server's defaults plus the settings the dev stack manages)."""
    candidate = _REPO_ROOT / "redis.conf"
    return candidate if candidate.is_file() else None
