"""The one cattrs converter of Kaleido's wire formats: stream entries (kaleido.messages, whose
leaf it is) and HTTP JSON bodies and answers (kaleido.http.bodies, kaleido.ops.streams).
docs/codecs.md tells how decoding works.

Each wire class gets its structure hook from `structure_fn`: one `override` per attribute, with
the wire name (`rename`, camelCase) and the hook that checks the value and its limits. A hook
raises `Invalid` (or KeyError when the field is missing); the converter's detailed validation
notes which attribute failed, and `failures` turns that into (wire path, reason) pairs in field
order, `media[1].mediaUrl` style: `transform_error`'s walk, with wire names instead of attribute
names. Messages take the first failure for their `DecodeError`; bodies, for their 400.

Only hooks live here; what a stream field or a body field may be is written next to its class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.gen._consts import AttributeOverride

StructureFn: TypeAlias = Callable[[Any, Any], Any]
Path: TypeAlias = tuple[str | int, ...]

converter: Final = cattrs.Converter(detailed_validation=True)

# class → attribute name → wire name, for the paths of `failures` (cattrs notes name attributes).
_WIRE_NAMES: dict[type, dict[str, str]] = {}


def wire_field(name: str, check: Callable[[Any], Any]) -> AttributeOverride:
    """An attribute read from the wire field `name` by `check` (value → value, or Invalid)."""
    return override(rename=name, struct_hook=lambda value, _: check(value))


def structure_fn(
    cls: type, fill: Mapping[str, object] | None = None, /, **fields: AttributeOverride
) -> StructureFn:
    """The structure hook of `cls`: `fields` by attribute name; `fill` gives absent wire fields
    a value first (a default in wire form, or a marker its hook turns into 'missing')."""
    _WIRE_NAMES.setdefault(cls, {}).update(
        {attr: spec.rename for attr, spec in fields.items() if spec.rename is not None}
    )
    structure: StructureFn = make_dict_structure_fn(cls, converter, **fields)  # type: ignore[arg-type]
    if not fill:
        return structure
    defaults = dict(fill)

    def filled(value: Any, cl: Any) -> Any:
        if isinstance(value, dict):
            value = defaults | value
        return structure(value, cl)

    return filled


def register(
    cls: type, fill: Mapping[str, object] | None = None, /, **fields: AttributeOverride
) -> None:
    """Register `structure_fn(cls, fill, **fields)` on the converter."""
    converter.register_structure_hook(cls, structure_fn(cls, fill, **fields))


def failures(exc: BaseException, path: Path = ()) -> list[tuple[Path, BaseException]]:
    """Every leaf error of a (nested) cattrs validation error, with its wire path, in field
    order; any other exception is one leaf at `path`."""
    found: list[tuple[Path, BaseException]] = []
    if isinstance(exc, cattrs.ClassValidationError):
        names = _WIRE_NAMES.get(exc.cl, {})
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            found += failures(sub, (*path, names.get(note.name, note.name)))
        for sub in without_notes:
            found += failures(sub, path)
    elif isinstance(exc, cattrs.IterableValidationError):
        with_index, without_index = exc.group_exceptions()
        for sub, item in with_index:
            found += failures(sub, (*path, item.index))
        for sub in without_index:
            found += failures(sub, path)
    else:
        found.append((path, exc))
    return found


def path_text(path: Path, root: str = "") -> str:
    """`("media", 1, "mediaUrl")` → `media[1].mediaUrl`; with `root`, `body[1].userId`."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def reason(exc: BaseException) -> str:
    """What a leaf error says: 'missing' for an absent field, an `Invalid`'s (or a class
    validator's ValueError's) own words."""
    if isinstance(exc, KeyError):
        return "missing"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"invalid ({type(exc).__name__}: {str(exc)[:60]})"


def first_failure(exc: BaseException) -> tuple[str, str]:
    """(wire path, reason) of the first field that failed."""
    path, leaf = failures(exc)[0]
    return path_text(path), reason(leaf)


def camel_case(name: str) -> str:
    """`oldest_pending_age` → `oldestPendingAge`."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def register_answer(cls: type, **fields: AttributeOverride) -> None:
    """Unstructure `cls` as a JSON answer: every attribute under its camelCase name, unless
    `fields` gives its own override."""
    overrides = {a.name: override(rename=camel_case(a.name)) for a in attrs.fields(cls)}
    converter.register_unstructure_hook(
        cls,
        make_dict_unstructure_fn(cls, converter, **(overrides | fields)),  # type: ignore[arg-type]
    )
