"""Value parsers shared by every decoder: ids, counts, booleans, numbers, lists, timestamps.

Each takes a field's text (already size-checked and UTF-8 decoded by
`kaleido.messages.entry.field_text`) and returns the value or raises `Invalid` with the reason;
the converter's path adds which field it came from. The limits of values live here.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar

import orjson

from kaleido.errors import Invalid
from kaleido.messages.limits import (
    FLOAT32_MAX,
    INT64_MAX,
    MAX_TAG_CHARS,
    MAX_TAGS,
    QUOTE_CHARS,
)
from kaleido.messages.peer import usable_correlation_id

# --------------------------------------------------------------------------- timestamps


def utc_timestamp(dt: datetime | None = None) -> str:
    """``dt`` (default: now) as ISO-8601 UTC with microseconds and ``Z``.

    E.g. ``2026-05-04T10:15:30.123456Z``. Raises ValueError for a naive datetime.
    """
    if dt is None:
        dt = datetime.now(UTC)
    elif dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: give it a timezone")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def ml_timestamp(dt: datetime) -> str:
    """As the ML service writes it: the fraction is left out when it is zero."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- value parsers
# Each takes the (already size-checked, UTF-8 decoded) text and raises Invalid.

_T = TypeVar("_T")

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_BOOLS: Final[Mapping[str, bool]] = MappingProxyType(
    {"true": True, "false": False, "1": True, "0": False}
)


def quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def integer(text: str, minimum: int, expected: str) -> int:
    stripped = text.strip()
    if not _DIGITS.fullmatch(stripped):
        raise Invalid(f"expected {expected}, got {quote(text)}")
    significant = stripped.lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow (and limited to 4300 digits).
    value = int(significant) if len(significant) <= len(str(INT64_MAX)) else INT64_MAX + 1
    if not minimum <= value <= INT64_MAX:
        raise Invalid(f"expected {expected}, got {quote(text)}")
    return value


def positive_id(text: str) -> int:
    """A positive 64-bit id in decimal digits (surrounding whitespace allowed)."""
    return integer(text, 1, "a positive 64-bit integer")


def non_negative_count(text: str) -> int:
    return integer(text, 0, "a non-negative 64-bit integer")


def boolean(text: str) -> bool:
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise Invalid(f'expected "true" or "false", got {quote(text)}')
    return value


def finite(value: float) -> float:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise Invalid(f"expected a finite number within float32 range, got {quote(value)}")
    return value


def number_text(text: str) -> float:
    """A decimal number written as text ("0.97", "1e-05")."""
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise Invalid(f"expected a decimal number, got {quote(text)}")
    return finite(float(stripped))


def number_json(value: object) -> float:
    """A JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"expected a number, got {quote(value)}")
    return finite(float(value))


def in_unit_interval(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise Invalid(f"expected a number between 0 and 1, got {quote(value)}")
    return value


def probability(text: str) -> float:
    return in_unit_interval(number_text(text))


def face_uid(text: str) -> str:
    """A UUID in its 8-4-4-4-12 form (any case), returned lowercase."""
    stripped = text.strip()
    if not _UUID.fullmatch(stripped):
        raise Invalid(f"expected a UUID string, got {quote(text)}")
    return str(uuid.UUID(stripped))


def iso_timestamp(text: str) -> datetime | None:
    """ISO-8601 → aware UTC datetime; a naive one is taken as UTC; empty text → None."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        parsed = datetime.fromisoformat(stripped)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(
            f"expected an ISO-8601 timestamp like 2026-05-04T10:15:30.123456Z, got {quote(text)}"
        ) from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a finite number")


def json_value(text: str) -> object:
    # orjson parses a 1408-float embedding ~14x faster than the standard library. What it
    # refuses (NaN, lone surrogates, numbers beyond a double, deep nesting) goes through the
    # standard parser, so results and error messages stay those of the standard library.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"invalid JSON ({quote(str(exc))[1:-1]})") from None


def _is_json_list(text: str) -> bool:
    return text.lstrip().startswith("[")


def _comma_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def json_list(text: str) -> list[Any]:
    items = json_value(text)
    if not isinstance(items, list):
        raise Invalid(f"expected a JSON list, got {quote(items)}")
    return items


def string_list(text: str) -> tuple[str, ...]:
    """A JSON list of strings, or comma-separated text ("a, b,c" → a, b, c)."""
    if not _is_json_list(text):
        return tuple(_comma_items(text))
    items = json_list(text)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise Invalid(f"item {index}: expected a string, got {quote(item)}")
    return tuple(items)


def number_list(text: str) -> tuple[float, ...]:
    """A JSON list of numbers, or comma-separated decimal text; never empty."""
    if _is_json_list(text):
        values = json_numbers(json_list(text))
    else:
        values = numbers(_comma_items(text), number_text)
    if not values:
        raise Invalid("expected at least one number, got none")
    return values


_JSON_NUMBER_TYPES: Final = frozenset((float, int))


def json_numbers(items: list[Any]) -> tuple[float, ...]:
    """Items of a parsed JSON list as floats, each a finite number within float32 range.

    Embeddings are long (1408 floats), so the common case is checked with whole-list builtins
    (several times faster than item by item); when that check fails, the item-by-item pass finds
    and names the first bad item. Same result and same errors either way.
    """
    if items:
        kinds = set(map(type, items))  # bool is its own type, not int, here
        # NaN compares false with everything, so min/max may miss it: the sum does not.
        if (
            kinds <= _JSON_NUMBER_TYPES
            and min(items) >= -FLOAT32_MAX
            and max(items) <= FLOAT32_MAX
            and not math.isnan(sum(items))
        ):
            return tuple(items) if int not in kinds else tuple(map(float, items))
    return numbers(items, number_json)


def numbers(items: list[_T], parse: Callable[[_T], float]) -> tuple[float, ...]:
    values = []
    for index, item in enumerate(items):
        try:
            values.append(parse(item))
        except Invalid as exc:
            raise Invalid(f"item {index}: {exc}") from None
    return tuple(values)


# --------------------------------------------------------------------------- field parsers


def as_is(text: str) -> str:
    return text


def non_empty(text: str) -> str:
    if not text:
        raise Invalid("empty")
    return text


def service_name(text: str) -> str:
    if not text.strip():
        raise Invalid("empty")
    return text.strip()


def echoed_correlation_id(text: str) -> str:
    """The entry's correlation id, or "" when it is not one Kaleido may echo outward (see
    `kaleido.messages.peer`): malformed, `"None"`, or changed by the ML service's decoding."""
    return usable_correlation_id(text) or ""


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


def labels(limit: int) -> Callable[[str], tuple[str, ...]]:
    """Tags or scenes: at most `limit`, each at most MAX_TAG_CHARS."""

    def parse(text: str) -> tuple[str, ...]:
        found = string_list(text)
        if len(found) > limit:
            raise Invalid(f"{len(found)} items, over the limit of {limit}")
        for index, label in enumerate(found):
            if len(label) > MAX_TAG_CHARS:
                raise Invalid(f"item {index}: {len(label)} characters, over {MAX_TAG_CHARS}")
        return found

    return parse


label_list: Final = labels(MAX_TAGS)


def event_timestamp(text: str) -> datetime:
    """A timestamp that must be there (an outbound event's)."""
    parsed = iso_timestamp(text)
    if parsed is None:
        raise Invalid("empty")
    return parsed
