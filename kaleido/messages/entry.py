"""A stream entry on the converter: its size caps, strict UTF-8, `text_field` (a field's text →
value, the override every stream attribute uses) and `structure_entry`, which turns the
converter's failure into a `DecodeError` naming the first bad field.

The checks run in this order, so a hostile entry costs little: the whole entry's size, then per
field (in the class's attribute order) its size, its UTF-8, then its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypeVar

import cattrs
from cattrs.gen import override
from cattrs.gen._consts import AttributeOverride

from kaleido.errors import Invalid
from kaleido.messages.converter import StructureFn, converter, first_failure
from kaleido.messages.limits import MAX_ENTRY_BYTES, MAX_FIELD_BYTES, QUOTE_CHARS
from kaleido.messages.model import DecodeError, Fields
from kaleido.replies import as_text

_T = TypeVar("_T")

RawEntry: TypeAlias = dict[str, object]


class _Required:
    """Fills a field that is required on the wire though its attribute has a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


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


def field_text(raw: object) -> str:
    """A field's text: size-checked before anything else, then strictly UTF-8 decoded."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_FIELD_BYTES:
            raise Invalid(f"{len(raw)} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(raw, str):
        size = len(raw) if len(raw) > MAX_FIELD_BYTES else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_FIELD_BYTES:
            raise Invalid(f"{size} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        return raw
    if raw is REQUIRED:
        raise KeyError("missing")
    raise Invalid(f"expected bytes or str, got {type(raw).__name__}")


def text_field(name: str, parse: Callable[[str], Any]) -> AttributeOverride:
    """An attribute read from the stream field `name`: its text (`field_text`), then `parse`."""
    return override(rename=name, struct_hook=lambda raw, _: parse(field_text(raw)))


def structure_entry(entry: RawEntry, cls: type[_T], structure: StructureFn | None = None) -> _T:
    """`entry` as a `cls` (by the converter's hook, or `structure`); `DecodeError` naming the
    first field that failed."""
    try:
        if structure is None:
            return converter.structure(entry, cls)
        result: _T = structure(entry, cls)
        return result
    except cattrs.BaseValidationError as exc:
        field, why = first_failure(exc)
        raise DecodeError(field or "entry", why) from None


def decode_text_fields(fields: Fields) -> dict[str, str]:
    """Every field as text, for DLQ copies and logs; never raises (bad UTF-8 is escaped)."""
    return {lenient_text(key): lenient_text(value) for key, value in fields.items()}


def lenient_text(value: object) -> str:
    return as_text(value, "backslashreplace")
