"""The `faces` field of a face-detection entry: a JSON list of face objects, structured by the
converter (each face reports every bad field of its own)."""

from __future__ import annotations

import cattrs

from kaleido.errors import Invalid
from kaleido.messages.converter import converter, failures, path_text, reason, register, wire_field
from kaleido.messages.limits import INT32_MAX, INT32_MIN, MAX_FACES
from kaleido.messages.model import DetectedFace
from kaleido.messages.values import (
    face_uid,
    in_unit_interval,
    json_numbers,
    json_value,
    number_json,
    number_text,
    quote,
)

# Early ML workers JSON-encoded bbox and embedding a second time and sent confidence as a string
# inside each face object; those forms are accepted too (the content is validated the same way).


def _legacy_json(value: object) -> object:
    return json_value(value) if isinstance(value, str) else value


def _pixel(value: object) -> int:
    """An int4 coordinate; an integral float (120.0) is accepted, a fractional one is not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not INT32_MIN <= value <= INT32_MAX:
        raise Invalid(f"expected 32-bit integers, got {quote(value)}")
    return value


def _bbox(value: object) -> tuple[int, int, int, int]:
    value = _legacy_json(value)
    if not isinstance(value, list) or len(value) != 4:
        raise Invalid(f"expected a list of 4 integers [x0, y0, x1, y1], got {quote(value)}")
    x0, y0, x1, y1 = (_pixel(item) for item in value)
    return (x0, y0, x1, y1)


def _embedding(value: object) -> tuple[float, ...]:
    value = _legacy_json(value)
    if not isinstance(value, list):
        raise Invalid(f"expected a list of numbers, got {quote(value)}")
    return json_numbers(value)


def _confidence(value: object) -> float:
    number = number_text(value) if isinstance(value, str) else number_json(value)
    return in_unit_interval(number)


def _face_id(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a UUID string, got {quote(value)}")
    return face_uid(value)


register(
    DetectedFace,
    face_id=wire_field("faceId", _face_id),
    bbox=wire_field("bbox", _bbox),
    embedding=wire_field("embedding", _embedding),
    confidence=wire_field("confidence", _confidence),
)


def _describe(error: cattrs.ClassValidationError) -> str:
    """One line for every field of one face that failed."""
    return "; ".join(
        f"{path_text(path)}: {reason(exc)}" if path else reason(exc)
        for path, exc in failures(error)
    )


def _face(index: int, item: object) -> DetectedFace:
    if not isinstance(item, dict):
        raise Invalid(f"face {index}: expected a JSON object, got {quote(item)}")
    try:
        return converter.structure(item, DetectedFace)
    except cattrs.ClassValidationError as exc:
        raise Invalid(f"face {index} {_describe(exc)}") from None


def parse_faces(text: str) -> tuple[DetectedFace, ...]:
    """The ``faces`` JSON list; face ids must be unique (they key the face rows)."""
    items = json_value(text)
    if not isinstance(items, list):
        raise Invalid(f"expected a JSON list of face objects, got {quote(items)}")
    if len(items) > MAX_FACES:
        raise Invalid(f"{len(items)} faces, over the limit of {MAX_FACES}")
    faces = tuple(_face(index, item) for index, item in enumerate(items))
    seen: set[str] = set()
    for face in faces:
        if face.face_id in seen:
            raise Invalid(f"duplicate faceId {face.face_id}")
        seen.add(face.face_id)
    return faces
