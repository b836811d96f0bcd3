"""Stream messages and their wire codecs (pure, no I/O).

A stream entry is a flat field → value map. redis-py hands values over as ``bytes`` (or ``str``
with ``decode_responses=True``); both are accepted. Every inbound decoder either returns a typed,
fully validated message or raises :class:`DecodeError`, which names the offending field: the
consumer sends such an entry to ``{stream}:dlq``. No decoder raises anything else, whatever the
input. Unknown extra fields are ignored, whatever their size.

The ``encode_insight`` / ``encode_face_detection`` / ``encode_face_recognition`` encoders write
entries exactly as the real ML service does; they exist for the stand-in ML service and tests,
and ``decode_x(encode_x(m)) == m`` holds for every message.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias, TypeVar, assert_never

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, override

from kaleido.errors import KaleidoError

__all__ = [
    "CONSUMER_GROUP",
    "CONSUMER_NAMES",
    "EMBEDDING_DIM",
    "FACE_DETECTION_STREAM",
    "FACE_RECOGNITION_STREAM",
    "INSIGHTS_STREAM",
    "INSIGHT_SERVICES",
    "MAX_ENTRY_BYTES",
    "MAX_FACES",
    "MAX_FIELD_BYTES",
    "POST_IMAGE_STREAM",
    "POST_UPDATE_STREAM",
    "PROFILE_PICTURE_STREAM",
    "DecodeError",
    "DetectedFace",
    "FaceDetectionResult",
    "FaceRecognitionResult",
    "Fields",
    "IgnoredEntry",
    "ImageCaptioning",
    "ImageEmbedding",
    "InboundMessage",
    "InsightPayload",
    "InsightResult",
    "Moderation",
    "PostMediaEvent",
    "ProfilePictureEvent",
    "SceneRecognition",
    "Tagging",
    "decode_face_detection",
    "decode_face_recognition",
    "decode_inbound",
    "decode_insight",
    "decode_post_media",
    "decode_profile_picture",
    "decode_text_fields",
    "dlq_stream",
    "encode_face_detection",
    "encode_face_recognition",
    "encode_insight",
    "encode_post_media",
    "encode_profile_picture",
    "utc_timestamp",
]

# --------------------------------------------------------------------------- streams

INSIGHTS_STREAM: Final = "ml-insights-results"
FACE_DETECTION_STREAM: Final = "face-detection-results"
FACE_RECOGNITION_STREAM: Final = "face-recognition-results"
POST_IMAGE_STREAM: Final = "post-image-processing"
POST_UPDATE_STREAM: Final = "post-update-processing"
PROFILE_PICTURE_STREAM: Final = "profile-picture-processing"

INBOUND_STREAMS: Final = (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM)
OUTBOUND_STREAMS: Final = (POST_IMAGE_STREAM, POST_UPDATE_STREAM, PROFILE_PICTURE_STREAM)

CONSUMER_GROUP: Final = "backend-group"

#: Inbound stream → consumer name (a process may append its instance name).
CONSUMER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        INSIGHTS_STREAM: "media-ai-consumer",
        FACE_DETECTION_STREAM: "face-detection-consumer",
        FACE_RECOGNITION_STREAM: "face-recognition-consumer",
    }
)


def dlq_stream(stream: str) -> str:
    """The dead-letter stream of ``stream``."""
    return f"{stream}:dlq"


# --------------------------------------------------------------------------- limits

# The largest real field, a 1408-float embedding, is ~30 KB of JSON: 1 MiB is ample headroom.
MAX_FIELD_BYTES: Final = 1024 * 1024
# Caps on what one inbound entry may carry (README "What an inbound entry may be"): with them a
# batch's memory is bounded whatever the ML service (or whoever can write to its streams) sends.
MAX_ENTRY_BYTES: Final = 2 * 1024 * 1024  # all fields together
EMBEDDING_DIM: Final = 1408  # an image embedding has exactly this many floats (configurable)
MAX_FACES: Final = 32  # faces in one face-detection entry; a face embedding at most EMBEDDING_DIM
MAX_TAGS: Final = 256  # tags or scenes in one entry
MAX_TAG_CHARS: Final = 256
MAX_CAPTION_CHARS: Final = 4096
MAX_USERNAME_CHARS: Final = 255
# A correlation id follows the HTTP header's rule; any other value is dropped (not logged).
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
INT64_MAX: Final = 2**63 - 1
# bbox goes to PostgreSQL int[] (int4).
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
# Embeddings go to PostgreSQL real[]: asyncpg rejects a finite double beyond float32 range,
# which would fail the whole batch on every retry, so such a value is a decode error instead.
FLOAT32_MAX: Final = 3.4028234663852886e38
# How much of a bad value an error message quotes (DLQ entries stay small).
_QUOTE_CHARS: Final = 60

# --------------------------------------------------------------------------- errors


class DecodeError(KaleidoError, ValueError):
    """A stream entry cannot be decoded: a field is missing, malformed or oversized.

    ``str(error)`` reads ``"<field>: <reason>"``, e.g.
    ``mediaId: expected a positive 64-bit integer, got 'abc'``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class _Invalid(ValueError):
    """A value is wrong; the caller adds which field it came from."""


# --------------------------------------------------------------------------- messages

Fields: TypeAlias = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
"""A raw stream entry as redis-py returns it."""


@attrs.frozen
class Moderation:
    """``service=moderation``. ``confidence`` is None when the entry carries none."""

    SERVICE: ClassVar[str] = "moderation"
    is_safe: bool
    confidence: float | None = None


@attrs.frozen
class Tagging:
    """``service=tagging``."""

    SERVICE: ClassVar[str] = "tagging"
    tags: tuple[str, ...]


@attrs.frozen
class SceneRecognition:
    """``service=scene_recognition``."""

    SERVICE: ClassVar[str] = "scene_recognition"
    scenes: tuple[str, ...]


@attrs.frozen
class ImageCaptioning:
    """``service=image_captioning``."""

    SERVICE: ClassVar[str] = "image_captioning"
    caption: str


@attrs.frozen
class ImageEmbedding:
    """``service=image_embedding`` (1408 floats from the real service; not enforced)."""

    SERVICE: ClassVar[str] = "image_embedding"
    embedding: tuple[float, ...]


InsightPayload: TypeAlias = (
    Moderation | Tagging | SceneRecognition | ImageCaptioning | ImageEmbedding
)

INSIGHT_SERVICES: Final[frozenset[str]] = frozenset(
    cls.SERVICE for cls in (Moderation, Tagging, SceneRecognition, ImageCaptioning, ImageEmbedding)
)


@attrs.frozen
class InsightResult:
    """One ``ml-insights-results`` entry: the result of one ML service for one media item.

    ``payload`` holds only that service's fields; ``match`` on its class to merge it.
    """

    media_id: int
    post_id: int
    payload: InsightPayload
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None

    @property
    def service(self) -> str:
        """The wire name of the service, e.g. ``"moderation"``."""
        return self.payload.SERVICE


@attrs.frozen
class IgnoredEntry:
    """An entry that is well-formed enough to acknowledge but carries nothing for us."""

    reason: str
    service: str = ""


@attrs.frozen
class DetectedFace:
    """One face of a ``face-detection-results`` entry.

    ``face_id`` is the ML ``faceId``, a canonical lowercase UUID string. ``bbox`` is
    ``(x0, y0, x1, y1)`` as sent; its ordering is not checked. ``embedding`` may be empty or
    all zeros.
    """

    face_id: str
    bbox: tuple[int, int, int, int]
    embedding: tuple[float, ...]
    confidence: float


@attrs.frozen
class FaceDetectionResult:
    """One ``face-detection-results`` entry.

    ``faces`` is authoritative; ``faces_detected`` is the count as the ML service reported it
    and may disagree with ``len(faces)`` (not an error).
    """

    media_id: int
    post_id: int
    faces_detected: int
    faces: tuple[DetectedFace, ...]
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


@attrs.frozen
class FaceRecognitionResult:
    """One ``face-recognition-results`` entry: a suggested identity for a detected face."""

    media_id: int
    post_id: int
    face_id: str
    suggested_user_id: int
    confidence: float
    matched_username: str | None = None
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


InboundMessage: TypeAlias = (
    InsightResult | IgnoredEntry | FaceDetectionResult | FaceRecognitionResult
)


def _check_id(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
        raise ValueError(f"{attribute.name}: expected a positive 64-bit integer, got {value!r}")


def _check_text(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name}: expected a non-empty string, got {value!r}")


def _check_aware(_: object, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{attribute.name}: expected a timezone-aware datetime, got {value!r}")


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class PostMediaEvent:
    """Outbound on ``post-image-processing`` and ``post-update-processing``."""

    post_id: int = attrs.field(validator=_check_id)
    media_id: int = attrs.field(validator=_check_id)
    media_url: str = attrs.field(validator=_check_text)
    uploader_id: int = attrs.field(validator=_check_id)
    correlation_id: str = attrs.field(validator=_check_text)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)


@attrs.frozen
class ProfilePictureEvent:
    """Outbound on ``profile-picture-processing``."""

    user_id: int = attrs.field(validator=_check_id)
    image_url: str = attrs.field(validator=_check_text)
    correlation_id: str = attrs.field(validator=_check_text)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)


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


def _ml_timestamp(dt: datetime) -> str:
    """As the ML service writes it: the fraction is left out when it is zero."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- value parsers
# Each takes the (already size-checked, UTF-8 decoded) text and raises _Invalid.

_T = TypeVar("_T")
_D = TypeVar("_D")

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_BOOLS: Final[Mapping[str, bool]] = MappingProxyType(
    {"true": True, "false": False, "1": True, "0": False}
)


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."


def _integer(text: str, minimum: int, expected: str) -> int:
    stripped = text.strip()
    if not _DIGITS.fullmatch(stripped):
        raise _Invalid(f"expected {expected}, got {_quote(text)}")
    significant = stripped.lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow (and limited to 4300 digits).
    value = int(significant) if len(significant) <= len(str(INT64_MAX)) else INT64_MAX + 1
    if not minimum <= value <= INT64_MAX:
        raise _Invalid(f"expected {expected}, got {_quote(text)}")
    return value


def _id(text: str) -> int:
    """A positive 64-bit id in decimal digits (surrounding whitespace allowed)."""
    return _integer(text, 1, "a positive 64-bit integer")


def _count(text: str) -> int:
    return _integer(text, 0, "a non-negative 64-bit integer")


def _bool(text: str) -> bool:
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise _Invalid(f'expected "true" or "false", got {_quote(text)}')
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise _Invalid(f"expected a finite number within float32 range, got {_quote(value)}")
    return value


def _number_text(text: str) -> float:
    """A decimal number written as text ("0.97", "1e-05")."""
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise _Invalid(f"expected a decimal number, got {_quote(text)}")
    return _finite(float(stripped))


def _number_json(value: object) -> float:
    """A JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_quote(value)}")
    return _finite(float(value))


def _in_unit_interval(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise _Invalid(f"expected a number between 0 and 1, got {_quote(value)}")
    return value


def _probability(text: str) -> float:
    return _in_unit_interval(_number_text(text))


def _face_uid(text: str) -> str:
    """A UUID in its 8-4-4-4-12 form (any case), returned lowercase."""
    stripped = text.strip()
    if not _UUID.fullmatch(stripped):
        raise _Invalid(f"expected a UUID string, got {_quote(text)}")
    return str(uuid.UUID(stripped))


def _timestamp(text: str) -> datetime | None:
    """ISO-8601 → aware UTC datetime; a naive one is taken as UTC; empty text → None."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        parsed = datetime.fromisoformat(stripped)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Invalid(
            f"expected an ISO-8601 timestamp like 2026-05-04T10:15:30.123456Z, got {_quote(text)}"
        ) from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a finite number")


def _json(text: str) -> object:
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
        raise _Invalid(f"invalid JSON ({_quote(str(exc))[1:-1]})") from None


def _is_json_list(text: str) -> bool:
    return text.lstrip().startswith("[")


def _comma_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _json_list(text: str) -> list[Any]:
    items = _json(text)
    if not isinstance(items, list):
        raise _Invalid(f"expected a JSON list, got {_quote(items)}")
    return items


def _string_list(text: str) -> tuple[str, ...]:
    """A JSON list of strings, or comma-separated text ("a, b,c" → a, b, c)."""
    if not _is_json_list(text):
        return tuple(_comma_items(text))
    items = _json_list(text)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise _Invalid(f"item {index}: expected a string, got {_quote(item)}")
    return tuple(items)


def _number_list(text: str) -> tuple[float, ...]:
    """A JSON list of numbers, or comma-separated decimal text; never empty."""
    if _is_json_list(text):
        values = _json_numbers(_json_list(text))
    else:
        values = _numbers(_comma_items(text), _number_text)
    if not values:
        raise _Invalid("expected at least one number, got none")
    return values


_JSON_NUMBER_TYPES: Final = frozenset((float, int))


def _json_numbers(items: list[Any]) -> tuple[float, ...]:
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
    return _numbers(items, _number_json)


def _numbers(items: list[_T], parse: Callable[[_T], float]) -> tuple[float, ...]:
    values = []
    for index, item in enumerate(items):
        try:
            values.append(parse(item))
        except _Invalid as exc:
            raise _Invalid(f"item {index}: {exc}") from None
    return tuple(values)


# --------------------------------------------------------------------------- faces (cattrs)
# Early ML workers JSON-encoded bbox and embedding a second time and sent confidence as a string
# inside each face object; those forms are accepted too (the content is validated the same way).


def _legacy_json(value: object) -> object:
    return _json(value) if isinstance(value, str) else value


def _pixel(value: object) -> int:
    """An int4 coordinate; an integral float (120.0) is accepted, a fractional one is not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _INT32_MIN <= value <= _INT32_MAX
    ):
        raise _Invalid(f"expected 32-bit integers, got {_quote(value)}")
    return value


def _structure_bbox(value: object, _: object) -> tuple[int, int, int, int]:
    value = _legacy_json(value)
    if not isinstance(value, list) or len(value) != 4:
        raise _Invalid(f"expected a list of 4 integers [x0, y0, x1, y1], got {_quote(value)}")
    x0, y0, x1, y1 = (_pixel(item) for item in value)
    return (x0, y0, x1, y1)


def _structure_embedding(value: object, _: object) -> tuple[float, ...]:
    value = _legacy_json(value)
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of numbers, got {_quote(value)}")
    return _json_numbers(value)


def _structure_confidence(value: object, _: object) -> float:
    number = _number_text(value) if isinstance(value, str) else _number_json(value)
    return _in_unit_interval(number)


def _structure_face_id(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a UUID string, got {_quote(value)}")
    return _face_uid(value)


_FACE_WIRE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"face_id": "faceId", "bbox": "bbox", "embedding": "embedding", "confidence": "confidence"}
)

_faces_converter = cattrs.Converter(detailed_validation=True)
_faces_converter.register_structure_hook(
    DetectedFace,
    make_dict_structure_fn(
        DetectedFace,
        _faces_converter,
        face_id=override(rename="faceId", struct_hook=_structure_face_id),
        bbox=override(struct_hook=_structure_bbox),
        embedding=override(struct_hook=_structure_embedding),
        confidence=override(struct_hook=_structure_confidence),
    ),
)


def _describe(error: cattrs.ClassValidationError) -> str:
    """One line for every field of one face that failed."""
    with_notes, without_notes = error.group_exceptions()
    parts = [
        f"{_FACE_WIRE_NAMES.get(note.name, note.name)}: {_reason(exc)}" for exc, note in with_notes
    ]
    parts += [_reason(exc) for exc in without_notes]
    return "; ".join(parts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "missing"
    if isinstance(exc, _Invalid):
        return str(exc)
    return f"invalid ({_quote(str(exc))[1:-1]})"


def _face(index: int, item: object) -> DetectedFace:
    if not isinstance(item, dict):
        raise _Invalid(f"face {index}: expected a JSON object, got {_quote(item)}")
    try:
        return _faces_converter.structure(item, DetectedFace)
    except cattrs.ClassValidationError as exc:
        raise _Invalid(f"face {index} {_describe(exc)}") from None


def _faces(text: str) -> tuple[DetectedFace, ...]:
    """The ``faces`` JSON list; face ids must be unique (they key the face rows)."""
    items = _json(text)
    if not isinstance(items, list):
        raise _Invalid(f"expected a JSON list of face objects, got {_quote(items)}")
    if len(items) > MAX_FACES:
        raise _Invalid(f"{len(items)} faces, over the limit of {MAX_FACES}")
    faces = tuple(_face(index, item) for index, item in enumerate(items))
    seen: set[str] = set()
    for face in faces:
        if face.face_id in seen:
            raise _Invalid(f"duplicate faceId {face.face_id}")
        seen.add(face.face_id)
    return faces


# --------------------------------------------------------------------------- field access

_Entry: TypeAlias = dict[str, object]


def _index(fields: Fields) -> _Entry:
    """Field name → raw value; a key that is not UTF-8 cannot be a known field and is dropped.
    The whole entry (every field, known or not) is at most MAX_ENTRY_BYTES."""
    size = sum(_size(key) + _size(value) for key, value in fields.items())
    if size > MAX_ENTRY_BYTES:
        key, value = max(fields.items(), key=lambda item: _size(item[1]))
        if _size(value) > MAX_FIELD_BYTES:  # one field is the reason: name it
            name = _lenient_text(key)[:_QUOTE_CHARS]
            raise DecodeError(name, f"{_size(value)} bytes, over the {MAX_FIELD_BYTES}-byte limit")
        raise DecodeError("entry", f"{size} bytes in all, over the {MAX_ENTRY_BYTES}-byte limit")
    entry: _Entry = {}
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


def _text(name: str, raw: object) -> str:
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
    text = _text(name, raw)
    try:
        return parse(text)
    except _Invalid as exc:
        raise DecodeError(name, str(exc)) from None


def _required(entry: _Entry, name: str, parse: Callable[[str], _T]) -> _T:
    raw = entry.get(name)
    if raw is None:
        raise DecodeError(name, "missing")
    return _parse(name, raw, parse)


def _optional(entry: _Entry, name: str, parse: Callable[[str], _T], default: _D) -> _T | _D:
    raw = entry.get(name)
    return default if raw is None else _parse(name, raw, parse)


def _as_is(text: str) -> str:
    return text


def _service(text: str) -> str:
    if not text.strip():
        raise _Invalid("empty")
    return text.strip()


def _correlation_id(entry: _Entry) -> str:
    value = _optional(entry, "correlationId", _as_is, "")
    return value if _CORRELATION_ID.fullmatch(value) else ""


def _capped(limit: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > limit:
            raise _Invalid(f"{len(text)} characters, over the {limit}-character limit of {what}")
        return text

    return parse


def _labels(text: str) -> tuple[str, ...]:
    """Tags or scenes: at most MAX_TAGS, each at most MAX_TAG_CHARS."""
    labels = _string_list(text)
    if len(labels) > MAX_TAGS:
        raise _Invalid(f"{len(labels)} items, over the limit of {MAX_TAGS}")
    for index, label in enumerate(labels):
        if len(label) > MAX_TAG_CHARS:
            raise _Invalid(f"item {index}: {len(label)} characters, over {MAX_TAG_CHARS}")
    return labels


def _received_at(entry: _Entry) -> datetime | None:
    return _optional(entry, "timestamp", _timestamp, None)


def _version(entry: _Entry) -> str | None:
    return _optional(entry, "version", _as_is, None)


# --------------------------------------------------------------------------- inbound decoders


def _decode_moderation(entry: _Entry) -> Moderation:
    return Moderation(
        is_safe=_required(entry, "isSafe", _bool),
        confidence=_optional(entry, "moderationConfidence", _probability, None),
    )


def _decode_tagging(entry: _Entry) -> Tagging:
    return Tagging(tags=_required(entry, "tags", _labels))


def _decode_scenes(entry: _Entry) -> SceneRecognition:
    return SceneRecognition(scenes=_required(entry, "scenes", _labels))


def _decode_caption(entry: _Entry) -> ImageCaptioning:
    caption = _capped(MAX_CAPTION_CHARS, "a caption")
    return ImageCaptioning(caption=_required(entry, "caption", caption))


def _decode_image_embedding(entry: _Entry, dim: int = EMBEDDING_DIM) -> ImageEmbedding:
    def exact(text: str) -> tuple[float, ...]:
        values = _number_list(text)
        if len(values) != dim:
            raise _Invalid(f"{len(values)} floats, expected exactly {dim}")
        return values

    return ImageEmbedding(embedding=_required(entry, "imageEmbedding", exact))


_PAYLOAD_DECODERS: Final[Mapping[str, Callable[[_Entry], InsightPayload]]] = MappingProxyType(
    {
        Moderation.SERVICE: _decode_moderation,
        Tagging.SERVICE: _decode_tagging,
        SceneRecognition.SERVICE: _decode_scenes,
        ImageCaptioning.SERVICE: _decode_caption,
        ImageEmbedding.SERVICE: _decode_image_embedding,
    }
)


def decode_insight(
    fields: Fields, *, embedding_dim: int = EMBEDDING_DIM
) -> InsightResult | IgnoredEntry:
    """Decode an ``ml-insights-results`` entry (an image embedding has exactly
    `embedding_dim` floats).

    An unknown ``service`` gives an :class:`IgnoredEntry` (its other fields are not checked);
    anything missing, malformed or over a cap raises :class:`DecodeError`.
    """
    entry = _index(fields)
    service = _required(entry, "service", _service)
    decode_payload = _PAYLOAD_DECODERS.get(service)
    if decode_payload is None:
        return IgnoredEntry(reason=f"unknown service {_quote(service)}", service=service)
    if service == ImageEmbedding.SERVICE:
        payload: InsightPayload = _decode_image_embedding(entry, embedding_dim)
    else:
        payload = decode_payload(entry)
    return InsightResult(
        media_id=_required(entry, "mediaId", _id),
        post_id=_required(entry, "postId", _id),
        payload=payload,
        correlation_id=_correlation_id(entry),
        timestamp=_received_at(entry),
        version=_version(entry),
    )


def decode_face_detection(
    fields: Fields, *, embedding_dim: int = EMBEDDING_DIM
) -> FaceDetectionResult:
    """Decode a ``face-detection-results`` entry (at most MAX_FACES faces, each embedding at
    most `embedding_dim` floats); raises :class:`DecodeError`."""
    entry = _index(fields)

    def faces(text: str) -> tuple[DetectedFace, ...]:
        found = _faces(text)
        for index, face in enumerate(found):
            if len(face.embedding) > embedding_dim:
                raise _Invalid(
                    f"face {index} embedding: {len(face.embedding)} floats, over {embedding_dim}"
                )
        return found

    return FaceDetectionResult(
        media_id=_required(entry, "mediaId", _id),
        post_id=_required(entry, "postId", _id),
        faces_detected=_required(entry, "facesDetected", _count),
        faces=_required(entry, "faces", faces),
        correlation_id=_correlation_id(entry),
        timestamp=_received_at(entry),
        version=_version(entry),
    )


def decode_face_recognition(fields: Fields) -> FaceRecognitionResult:
    """Decode a ``face-recognition-results`` entry; raises :class:`DecodeError`."""
    entry = _index(fields)
    return FaceRecognitionResult(
        media_id=_required(entry, "mediaId", _id),
        post_id=_required(entry, "postId", _id),
        face_id=_required(entry, "faceId", _face_uid),
        suggested_user_id=_required(entry, "suggestedUserId", _id),
        confidence=_required(entry, "confidenceScore", _probability),
        matched_username=_optional(
            entry, "matchedUsername", _capped(MAX_USERNAME_CHARS, "a username"), None
        ),
        correlation_id=_correlation_id(entry),
        timestamp=_received_at(entry),
        version=_version(entry),
    )


_INBOUND_DECODERS: Final[Mapping[str, Callable[[Fields], InboundMessage]]] = MappingProxyType(
    {
        INSIGHTS_STREAM: decode_insight,
        FACE_DETECTION_STREAM: decode_face_detection,
        FACE_RECOGNITION_STREAM: decode_face_recognition,
    }
)


def decode_inbound(stream: str, fields: Fields) -> InboundMessage:
    """Decode an entry of any inbound stream; raises :class:`DecodeError`.

    An unknown ``stream`` is a programming error: KeyError.
    """
    return _INBOUND_DECODERS[stream](fields)


def decode_text_fields(fields: Fields) -> dict[str, str]:
    """Every field as text, for DLQ copies and logs; never raises (bad UTF-8 is escaped)."""
    return {_lenient_text(key): _lenient_text(value) for key, value in fields.items()}


def _lenient_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- outbound


def encode_post_media(event: PostMediaEvent) -> dict[str, str]:
    """Fields for ``post-image-processing`` / ``post-update-processing``."""
    return {
        "postId": str(event.post_id),
        "mediaId": str(event.media_id),
        "mediaUrl": event.media_url,
        "imageUrl": event.media_url,
        "uploaderId": str(event.uploader_id),
        "timestamp": utc_timestamp(event.timestamp),
        "correlationId": event.correlation_id,
    }


def encode_profile_picture(event: ProfilePictureEvent) -> dict[str, str]:
    """Fields for ``profile-picture-processing``."""
    return {
        "userId": str(event.user_id),
        "imageUrl": event.image_url,
        "correlationId": event.correlation_id,
        "timestamp": utc_timestamp(event.timestamp),
    }


def _event_timestamp(text: str) -> datetime:
    parsed = _timestamp(text)
    if parsed is None:
        raise _Invalid("empty")
    return parsed


def _non_empty(text: str) -> str:
    if not text:
        raise _Invalid("empty")
    return text


def decode_post_media(fields: Fields) -> PostMediaEvent:
    """Decode a ``post-image-processing`` / ``post-update-processing`` entry (stand-in ML side)."""
    entry = _index(fields)
    return PostMediaEvent(
        post_id=_required(entry, "postId", _id),
        media_id=_required(entry, "mediaId", _id),
        media_url=_required(entry, "mediaUrl", _non_empty),
        uploader_id=_required(entry, "uploaderId", _id),
        correlation_id=_required(entry, "correlationId", _non_empty),
        timestamp=_required(entry, "timestamp", _event_timestamp),
    )


def decode_profile_picture(fields: Fields) -> ProfilePictureEvent:
    """Decode a ``profile-picture-processing`` entry (stand-in ML side)."""
    entry = _index(fields)
    return ProfilePictureEvent(
        user_id=_required(entry, "userId", _id),
        image_url=_required(entry, "imageUrl", _non_empty),
        correlation_id=_required(entry, "correlationId", _non_empty),
        timestamp=_required(entry, "timestamp", _event_timestamp),
    )


# --------------------------------------------------------------------------- ML-side encoders


def _ml_entry(
    result: InsightResult | FaceDetectionResult | FaceRecognitionResult, body: dict[str, str]
) -> dict[str, str]:
    """ids, ``body``, correlationId, timestamp, version: the order of the contract's examples."""
    fields = {"mediaId": str(result.media_id), "postId": str(result.post_id), **body}
    fields["correlationId"] = result.correlation_id
    if result.timestamp is not None:
        fields["timestamp"] = _ml_timestamp(result.timestamp)
    if result.version is not None:
        fields["version"] = result.version
    return fields


def _payload_fields(payload: InsightPayload) -> dict[str, str]:
    match payload:
        case Moderation(is_safe=is_safe, confidence=confidence):
            fields = {"isSafe": "true" if is_safe else "false"}
            if confidence is not None:
                fields["moderationConfidence"] = str(confidence)
            return fields
        case Tagging(tags=tags):
            return {"tags": json.dumps(list(tags))}
        case SceneRecognition(scenes=scenes):
            return {"scenes": json.dumps(list(scenes))}
        case ImageCaptioning(caption=caption):
            return {"caption": caption}
        case ImageEmbedding(embedding=embedding):
            return {"imageEmbedding": json.dumps(list(embedding))}
        case _:
            assert_never(payload)


def encode_insight(result: InsightResult) -> dict[str, str]:
    """An ``ml-insights-results`` entry exactly as the real ML service writes it."""
    return _ml_entry(result, {"service": result.service, **_payload_fields(result.payload)})


def encode_face_detection(result: FaceDetectionResult) -> dict[str, str]:
    """A ``face-detection-results`` entry exactly as the real ML service writes it."""
    faces = [
        {
            "faceId": face.face_id,
            "bbox": list(face.bbox),
            "embedding": list(face.embedding),
            "confidence": face.confidence,
        }
        for face in result.faces
    ]
    head = {"facesDetected": str(result.faces_detected), "faces": json.dumps(faces)}
    return _ml_entry(result, head)


def encode_face_recognition(result: FaceRecognitionResult) -> dict[str, str]:
    """A ``face-recognition-results`` entry exactly as the real ML service writes it."""
    head = {"faceId": result.face_id, "suggestedUserId": str(result.suggested_user_id)}
    if result.matched_username is not None:
        head["matchedUsername"] = result.matched_username
    head["confidenceScore"] = str(result.confidence)
    return _ml_entry(result, head)
