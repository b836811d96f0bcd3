"""Reading Redis replies: bytes as text, and stream entry ids as sortable keys.

The client runs with `decode_responses=False`, so names, ids and values come back as bytes
(or as str from Lua scripts and some parsers); these helpers accept either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_text(value: object, errors: str = "strict") -> str:
    """`value` as text: bytes decoded as UTF-8 (with `errors`), anything else through str()."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors)
    return value if isinstance(value, str) else str(value)


def text_keys(reply: Mapping[Any, Any]) -> dict[str, Any]:
    """A map reply (XINFO, XPENDING) with its keys as text; values as they came."""
    return {as_text(key): value for key, value in reply.items()}


def id_key(entry_id: object) -> tuple[int, int]:
    """A stream id (`1700000000000-3`, bytes or str) as a sortable (milliseconds, sequence)."""
    ms, _, seq = as_text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def id_text(key: tuple[int, int]) -> str:
    """The stream id of an `id_key` pair."""
    return f"{key[0]}-{key[1]}"
