"""Kaleido: the Redis-backed view counting and ML stream core of Kaleidoscope, on trio.

Embedding it in a trio program::

    import kaleido

    async with kaleido.open_kaleido(kaleido.Settings.from_env()) as k:
        await k.views.record_and_wait([(user_id, post_id)])
        total = await k.views.total(post_id)

or, with its HTTP listeners, `await nursery.start(kaleido.serve, settings)`.
"""

from typing import TYPE_CHECKING, Any

from kaleido.embedded import Kaleido, SyncFailed, Views, open_kaleido
from kaleido.errors import (
    BackendError,
    ConfigError,
    KaleidoError,
    PostgresUnavailable,
    RedisUnavailable,
    TransientError,
)
from kaleido.settings import Settings
from kaleido.views.model import RecordResult, SyncReport

if TYPE_CHECKING:
    from kaleido.app import Running, serve

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    # The HTTP stack (Starlette, hypercorn) loads only for those who serve HTTP.
    if name in ("serve", "Running"):
        from kaleido import app

        return getattr(app, name)
    raise AttributeError(f"module 'kaleido' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "ConfigError",
    "Kaleido",
    "KaleidoError",
    "PostgresUnavailable",
    "RecordResult",
    "RedisUnavailable",
    "Running",
    "Settings",
    "SyncFailed",
    "SyncReport",
    "TransientError",
    "Views",
    "__version__",
    "open_kaleido",
    "serve",
]
