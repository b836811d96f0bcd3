"""Structured logs (structlog): JSON lines by default, console when asked.

The correlation id of the request, stream entry or sync at hand lives in a context variable
(structlog.contextvars), so every line logged while handling it carries it; trio copies context
variables into the tasks it spawns.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import orjson
import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

CORRELATION_KEY = "correlation_id"


# Tracebacks as data, without local variables: a frame's locals may hold a password.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def configure_logging(
    fmt: str = "json",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    *,
    worker: int | None = None,
) -> None:
    """Configure structlog once for the process; `fmt` is "json" or "console"; `worker` (a
    process of `kaleido run --workers N`) is added to every line.

    Lines go to `stream` (default: standard error); a `level` above logging.CRITICAL logs
    nothing. JSON lines are serialised by orjson and
    written as bytes where the stream has a binary buffer: a consumer logs one line per
    entry, so a line must cost microseconds.
    """
    out = sys.stderr if stream is None else stream
    renderer: Any
    factory: Any
    binary = getattr(out, "buffer", None)
    if fmt == "json" and binary is not None:
        renderer = structlog.processors.JSONRenderer(serializer=_json_bytes)
        factory = structlog.BytesLoggerFactory(file=binary)
    elif fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        factory = structlog.PrintLoggerFactory(file=out)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        factory = structlog.PrintLoggerFactory(file=out)
    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    if worker is not None:
        processors.append(_add_fields(worker=worker))
    if level > logging.CRITICAL:
        processors = [_drop]
        level = logging.CRITICAL
    structlog.configure(
        processors=[
            *processors,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _DICT_TRACEBACKS if fmt == "json" else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def use_default_logging(fmt: str = "json") -> None:
    """Configure logging as `configure_logging(fmt)` does (standard error) unless the process
    already configured structlog: an embedding program routes or silences Kaleido's lines by
    configuring structlog (or calling `configure_logging`) first; unconfigured, structlog would
    print to standard output, which is the program's own (docs/embedding.md)."""
    if not structlog.is_configured():
        configure_logging(fmt)


def _drop(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    raise structlog.DropEvent


def _add_fields(**fields: Any) -> Any:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.update(fields)
        return event

    return add


def _json_bytes(event: Any, **_: Any) -> bytes:
    try:
        return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits: a log line must never fail
        return json.dumps(event, default=repr).encode()


def _json_text(event: Any, **_: Any) -> str:
    return _json_bytes(event).decode()


def get_logger(name: str) -> Any:
    """A structlog logger tagged with the component `name`."""
    return structlog.get_logger(component=name)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def current_correlation_id() -> str | None:
    value = get_contextvars().get(CORRELATION_KEY)
    return str(value) if value else None


@contextmanager
def correlation(correlation_id: str | None) -> Iterator[str]:
    """Bind a correlation id (a new one if None) to every log line inside the block."""
    cid = correlation_id or new_correlation_id()
    tokens = bind_contextvars(**{CORRELATION_KEY: cid})
    try:
        yield cid
    finally:
        reset_contextvars(**tokens)


def correlation_field(correlation_id: str | bytes | None) -> dict[str, str]:
    """`{"correlation_id": id}` for a log line about an entry that carries an id, else `{}`.

    For lines about one stream entry among a batch: the entry's own id, not the context's.
    """
    if isinstance(correlation_id, bytes):
        correlation_id = correlation_id.decode(errors="replace")
    return {CORRELATION_KEY: correlation_id} if correlation_id else {}
