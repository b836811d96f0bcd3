"""How the ML service reads a field, and the correlation ids that survive it (CONTRACT 2b).

Every Python reader of the ML service (all but its media preprocessor) JSON-decodes each field
and keeps the text only when decoding fails: `"42"` arrives as the int 42, `"true"` as True,
`"null"` as None, `"1e5"` as a float. Its schemas want `correlationId` as a string, so an id
that decodes to anything else makes the worker drop the result. Kaleido therefore never sends
such an id: a caller's id that would change is replaced by a fresh one, and an inbound entry's
id that would (or is empty, or the `"None"` their publisher writes for a decoded null) is not
echoed outward.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from kaleido.messages.limits import CORRELATION_ID

# What the peer's publisher writes for an id it decoded to null: not an id.
_NOT_AN_ID: Final = frozenset({"None"})


def peer_decode(text: str) -> object:
    """A field as the ML service's readers see it: JSON-decoded, or the text itself."""
    try:
        return json.loads(text)
    except ValueError:  # json.JSONDecodeError is one
        return text


def keeps_type(text: str) -> bool:
    """True when the ML service's decoding leaves `text` the very same string."""
    decoded = peer_decode(text)
    return isinstance(decoded, str) and decoded == text


def peer_fields(fields: Mapping[str, str]) -> dict[str, object]:
    """An outbound entry as the ML service's readers decode it (for tests and the stand-in)."""
    return {name: peer_decode(value) for name, value in fields.items()}


def usable_correlation_id(value: str | None) -> str | None:
    """`value` if Kaleido may send it to the ML service as a correlation id, else None: it
    must follow the header's rule (`CORRELATION_ID`), survive the peer's decoding and not be
    `"None"`."""
    if not value or value in _NOT_AN_ID or not CORRELATION_ID.fullmatch(value):
        return None
    return value if keeps_type(value) else None
