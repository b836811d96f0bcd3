"""Kaleido: the Redis-backed view counting and ML stream core of Kaleidoscope, on trio.

Embedding it in a trio program (docs/embedding.md)::

    import kaleido

    async with kaleido.open_kaleido(kaleido.Settings.from_env()) as k:
        await k.views.record([(user_id, post_id)])
        total = await k.views.total(post_id)

or, with its HTTP listeners, `running = await nursery.start(kaleido.serve, settings)`.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaleido.app import Running, serve
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

__version__ = "0.2.0"

# Each public name loads its module when first used: `import kaleido` (and the pytest plugin,
# which every pytest session of an environment loads) costs next to nothing, and the HTTP
# stack (Starlette, hypercorn) loads only for those who serve HTTP.
_HOMES = {
    "Running": "kaleido.app",
    "serve": "kaleido.app",
    "Kaleido": "kaleido.embedded",
    "Views": "kaleido.embedded",
    "open_kaleido": "kaleido.embedded",
    "Posts": "kaleido.embedded_posts",
    "BackendError": "kaleido.errors",
    "ConfigError": "kaleido.errors",
    "KaleidoDeprecationWarning": "kaleido.errors",
    "KaleidoError": "kaleido.errors",
    "PostgresUnavailable": "kaleido.errors",
    "RedisUnavailable": "kaleido.errors",
    "SyncFailed": "kaleido.errors",
    "TransientError": "kaleido.errors",
    "configure_logging": "kaleido.logs",
    "MediaItem": "kaleido.posts",
    "MediaTaken": "kaleido.posts",
    "PostExists": "kaleido.posts",
    "PostNotFound": "kaleido.posts",
    "PostRecord": "kaleido.posts",
    "Stored": "kaleido.posts",
    "Settings": "kaleido.settings",
    "RecordResult": "kaleido.views.model",
    "SyncReport": "kaleido.views.model",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kaleido' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


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
