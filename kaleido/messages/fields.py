"""Field access for decoders: the entry's size caps, strict UTF-8, required and optional
fields, and the fields every inbound entry shares (correlationId, timestamp, version).

A failure here is a `DecodeError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeAlias, TypeVar

from kaleido.messages.limits import (
    MAX_ENTRY_BYTES,
    MAX_FIELD_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    QUOTE_CHARS,
)
from kaleido.messages.model import DecodeError, Fields, Invalid
from kaleido.messages.peer import usable_correlation_id
from kaleido.messages.values import iso_timestamp, number_list, string_list
from kaleido.replies import as_text

_T = TypeVar("_T")
_D = TypeVar("_D")

RawEntry: TypeAlias = dict[str, object]


def index_fields(fields: Fields) -> RawEntry:
    """Field name → raw value; a key that is not UTF-8 cannot be a known field and is dropped.
    The whole entry (every field, known or not) is at most MAX_ENTRY_BYTES."""
    size = sum(_size(key) + _size(value) for key, value in fields.items())
    if size > MAX_ENTRY_BYTES:
        key, value = max(fields.items(), key=lambda item: _size(item[1]))
        if _size(value) > MAX_FIELD_BYTES:  # one field is the reason: name it
            name = lenient_text(key)[:QUOTE_CHARS]
            raise DecodeError(name, f"{_size(value)} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        raise DecodeError("entry", f"{size} bytes in all, over the {MAX_ENTRY_BYTES}-byte limit")
    entry: RawEntry = {}
    for key, value in fields.items():
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                continue
        if isinstance(key, str):
            entry[key] = value
    return entry


def _size(raw: object) -> int:
    return len(raw) if isinstance(raw, bytes | str) else 0


def field_text(name: str, raw: object) -> str:
    """The field's text: size-checked before anything else, then strictly UTF-8 decoded."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_FIELD_BYTES:
            raise DecodeError(name, f"{len(raw)} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(name, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(raw, str):
        size = len(raw) if len(raw) > MAX_FIELD_BYTES else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_FIELD_BYTES:
            raise DecodeError(name, f"{size} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        return raw
    raise DecodeError(name, f"expected bytes or str, got {type(raw).__name__}")


def _parse(name: str, raw: object, parse: Callable[[str], _T]) -> _T:
    text = field_text(name, raw)
    try:
        return parse(text)
    except Invalid as exc:
        raise DecodeError(name, str(exc)) from None


def required(entry: RawEntry, name: str, parse: Callable[[str], _T]) -> _T:
    raw = entry.get(name)
    if raw is None:
        raise DecodeError(name, "missing")
    return _parse(name, raw, parse)


def optional(entry: RawEntry, name: str, parse: Callable[[str], _T], default: _D) -> _T | _D:
    raw = entry.get(name)
    return default if raw is None else _parse(name, raw, parse)


def as_is(text: str) -> str:
    return text


def service_name(text: str) -> str:
    if not text.strip():
        raise Invalid("empty")
    return text.strip()


def entry_correlation_id(entry: RawEntry) -> str:
    """The entry's correlation id, or "" when it is not one Kaleido may echo outward (see
    `kaleido.messages.peer`): malformed, `"None"`, or changed by the ML service's decoding."""
    return usable_correlation_id(optional(entry, "correlationId", as_is, "")) or ""


def capped(limit: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > limit:
            raise Invalid(f"{len(text)} characters, over the {limit}-character limit of {what}")
        return text

    return parse


def exact_floats(dim: int) -> Callable[[str], tuple[float, ...]]:
    """An embedding: a list of exactly `dim` finite numbers (JSON, or comma-separated)."""

    def parse(text: str) -> tuple[float, ...]:
        values = number_list(text)
        if len(values) != dim:
            raise Invalid(f"{len(values)} floats, expected exactly {dim}")
        return values

    return parse


def label_list(text: str) -> tuple[str, ...]:
    """Tags or scenes: at most MAX_TAGS, each at most MAX_TAG_CHARS."""
    labels = string_list(text)
    if len(labels) > MAX_TAGS:
        raise Invalid(f"{len(labels)} items, over the limit of {MAX_TAGS}")
    for index, label in enumerate(labels):
        if len(label) > MAX_TAG_CHARS:
            raise Invalid(f"item {index}: {len(label)} characters, over {MAX_TAG_CHARS}")
    return labels


def received_at(entry: RawEntry) -> datetime | None:
    return optional(entry, "timestamp", iso_timestamp, None)


def version_of(entry: RawEntry) -> str | None:
    return optional(entry, "version", as_is, None)


def decode_text_fields(fields: Fields) -> dict[str, str]:
    """Every field as text, for DLQ copies and logs; never raises (bad UTF-8 is escaped)."""
    return {lenient_text(key): lenient_text(value) for key, value in fields.items()}


def lenient_text(value: object) -> str:
    return as_text(value, "backslashreplace")
