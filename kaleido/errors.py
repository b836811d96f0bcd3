"""The project's own exceptions.

Gateways translate every foreign exception (redis-py, asyncpg, asyncio) into one of these in a
single place, so that the rest of the code base only ever catches Kaleido exceptions.
"""

from __future__ import annotations

import warnings


class KaleidoError(Exception):
    """Base class of every exception Kaleido raises on purpose."""


class Invalid(ValueError):
    """A value is wrong: the message says why, and the caller (a structure hook's path, a
    check that names its field) adds where."""


class ConfigError(KaleidoError):
    """A setting is invalid; the message names the variable and what is wrong."""


class BackendError(KaleidoError):
    """A backend (Redis or PostgreSQL) call failed."""


class TransientError(BackendError):
    """A failure that may go away by itself: connection lost, timeout, server loading."""


class RedisUnavailable(TransientError):
    """Redis could not be reached or did not answer in time."""


class PostgresUnavailable(TransientError):
    """PostgreSQL could not be reached or did not answer in time.

    `statement` is True when PostgreSQL answered and refused this statement for now (a
    timeout, a deadlock, a serialization failure: SQLSTATE classes 40, 53, 57): something the
    statement's own data may cause again. False for a lost connection (class 08, a socket
    error), which is never the data's doing."""

    def __init__(self, message: str, *, statement: bool = False) -> None:
        super().__init__(message)
        self.statement = statement


class CircuitOpen(TransientError):
    """A circuit breaker is open: the call was not attempted. `backend` names the breaker's
    backend ("redis", "postgres")."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend


class RedisOutOfMemory(BackendError):
    """Redis refused a write because it reached maxmemory (OOM command not allowed)."""


class NoGroup(BackendError):
    """The stream or its consumer group does not exist (Redis restarted or flushed)."""


class RedisCommandError(BackendError):
    """Redis answered a command with an error that is not transient. `code` is the reply's
    error code ("BUSYGROUP", "UNBLOCKED", "NOPERM", ...; "" for a client-side error)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class RedisPermissionDenied(RedisCommandError):
    """Redis's ACL refused a command or a key (NOPERM): the Redis user lacks a right that
    `kaleido redis-acl` grants. Not transient, but an operator can fix it while Kaleido runs."""

    def __init__(self, message: str, *, code: str = "NOPERM") -> None:
        super().__init__(message, code=code)


class RedisFunctionMissing(RedisPermissionDenied):
    """Redis has no function by the name Kaleido called (`FCALL`): its function library was
    never loaded, is another version, or was lost when Redis restarted without persistence.
    Kaleido's user may not load code: an admin does (`kaleido redis-acl --setuser`). Handled
    as a missing right: an operator fixes it while Kaleido runs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ERR")


class PostgresQueryError(BackendError):
    """PostgreSQL rejected a statement for a reason that retrying will not fix. `sqlstate` is
    its SQLSTATE ("23505": unique violation; "" for a client-side error)."""

    def __init__(self, message: str, *, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class SyncFailed(KaleidoError):
    """`Kaleido.sync_now()` could not sync (the reason is the message)."""


class SettingError(ConfigError):
    """A `Settings` field holds a bad value: `field` names it, `reason` says what is wrong (the
    environment layer reports it under the variable or flag it came from)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Settings.{field}: {reason}")
        self.field = field
        self.reason = reason


class KaleidoDeprecationWarning(DeprecationWarning):
    """A name of Kaleido's public API that goes in the next release; the message says what
    replaces it."""


def warn_deprecated(old: str, new: str) -> None:
    """Warn, at the caller's caller, that `old` is deprecated in favour of `new`."""
    warnings.warn(
        f"{old} is deprecated and goes in the next release; use {new}",
        KaleidoDeprecationWarning,
        stacklevel=3,
    )
