"""Kaleido: the Redis-backed view counting and ML stream core of Kaleidoscope, on trio.

Embedding it in a trio program (docs/embedding.md)::

    import kaleido

    async with kaleido.open_kaleido(kaleido.Settings.from_env()) as k:
        await k.views.record([(user_id, post_id)])
        total = await k.views.total(post_id)

or, with its HTTP listeners, `running = await nursery.start(kaleido.serve, settings)`.
"""

from typing import TYPE_CHECKING, Any

from kaleido.embedded import Kaleido, Views, open_kaleido
from kaleido.embedded_posts import Posts
from kaleido.errors import (
    BackendError,
    ConfigError,
    KaleidoDeprecationWarning,
    KaleidoError,
    PostgresUnavailable,
    RedisUnavailable,
    SyncFailed,
    TransientError,
)
from kaleido.logs import configure_logging
from kaleido.posts import MediaItem, MediaTaken, PostExists, PostNotFound, PostRecord, Stored
from kaleido.settings import Settings
from kaleido.views.model import RecordResult, SyncReport

if TYPE_CHECKING:
    from kaleido.app import Running, serve

__version__ = "0.1.0"


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
    "KaleidoDeprecationWarning",
    "KaleidoError",
    "MediaItem",
    "MediaTaken",
    "PostExists",
    "PostNotFound",
    "PostRecord",
    "PostgresUnavailable",
    "Posts",
    "RecordResult",
    "RedisUnavailable",
    "Running",
    "Settings",
    "Stored",
    "SyncFailed",
    "SyncReport",
    "TransientError",
    "Views",
    "__version__",
    "configure_logging",
    "open_kaleido",
    "serve",
]
