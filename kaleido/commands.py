"""One-shot commands of the `kaleido` command line that talk to a running deployment's Redis
and PostgreSQL (they need `KALEIDO_REDIS_URL` and `KALEIDO_DATABASE_URL`)."""

from __future__ import annotations

import json
import sys

import attrs

from kaleido.errors import ConfigError
from kaleido.gateways import open_backends
from kaleido.lock import LockBusy, RedisLock
from kaleido.migrate import migrate
from kaleido.settings import Settings
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync


def require_urls(settings: Settings, command: str) -> None:
    if settings.embedded:
        raise ConfigError(
            f"kaleido {command}: set KALEIDO_REDIS_URL and KALEIDO_DATABASE_URL "
            "(or --redis-url and --database-url) to the deployment to act on"
        )


async def sync_now(settings: Settings) -> int:
    """Run one sync under the lock; print its report as JSON. Exit 1 if the lock is busy."""
    require_urls(settings, "sync")
    async with open_backends(settings) as backends:
        await migrate(backends.postgres)
        store = ViewStore(backends.redis, backends.keys, settings.view_dedup_ttl)
        lock = RedisLock(backends.redis, backends.keys.lock)
        try:
            async with lock.hold():
                report = await ViewSync(store, backends.postgres).run_once()
        except LockBusy as exc:
            print(f"kaleido sync: {exc}; a sync is already running", file=sys.stderr)
            return 1
    print(json.dumps(attrs.asdict(report)))
    return 0
