"""The `faces` field of a face-detection entry: a JSON list of face objects, via cattrs."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from kaleido.messages.limits import INT32_MAX, INT32_MIN, MAX_FACES
from kaleido.messages.model import DetectedFace, Invalid
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


def _structure_bbox(value: object, _: object) -> tuple[int, int, int, int]:
    value = _legacy_json(value)
    if not isinstance(value, list) or len(value) != 4:
        raise Invalid(f"expected a list of 4 integers [x0, y0, x1, y1], got {quote(value)}")
    x0, y0, x1, y1 = (_pixel(item) for item in value)
    return (x0, y0, x1, y1)


def _structure_embedding(value: object, _: object) -> tuple[float, ...]:
    value = _legacy_json(value)
    if not isinstance(value, list):
        raise Invalid(f"expected a list of numbers, got {quote(value)}")
    return json_numbers(value)


def _structure_confidence(value: object, _: object) -> float:
    number = number_text(value) if isinstance(value, str) else number_json(value)
    return in_unit_interval(number)


def _structure_face_id(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a UUID string, got {quote(value)}")
    return face_uid(value)


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
    if isinstance(exc, Invalid):
        return str(exc)
    return f"invalid ({quote(str(exc))[1:-1]})"


def _face(index: int, item: object) -> DetectedFace:
    if not isinstance(item, dict):
        raise Invalid(f"face {index}: expected a JSON object, got {quote(item)}")
    try:
        return _faces_converter.structure(item, DetectedFace)
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
