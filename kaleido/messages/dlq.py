"""The dead-letter codec: what a `{stream}:dlq` entry holds, written and read in one place.

A dead letter is the original entry's fields plus `error`, `errorType`, `originalId`,
`deliveries` and `failedAt`. The consumer writes them (`encode_dead_letter`); the DLQ tools
list and replay them (`decode_dead_letter`, and `DLQ_FIELDS` to strip them on replay).
Decoding never raises: bad UTF-8 is escaped, a missing or odd field reads as empty or 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from kaleido.messages.entry import decode_text_fields, lenient_text

# The fields a dead letter adds to the original entry, in the order they are written.
DLQ_FIELDS: Final = ("error", "errorType", "originalId", "deliveries", "failedAt")


@attrs.frozen
class Rejection:
    """An entry to dead-letter, with why: the consumer's side of a dead letter."""

    entry_id: str
    fields: Mapping[bytes, bytes]  # the entry as it was read
    error_type: str  # "DecodeError", "MaxDeliveriesExceeded", an exception's class name
    error: str
    deliveries: int


@attrs.frozen
class DeadLetter:
    """One DLQ entry read back, as text (bad UTF-8 escaped)."""

    dlq_id: str
    original_id: str
    error_type: str
    error: str
    deliveries: int
    failed_at: str
    fields: Mapping[str, str]  # the original entry's fields


def encode_dead_letter(rejection: Rejection, failed_at: str) -> list[bytes | str]:
    """The DLQ entry's fields, flat (name, value, name, value, ...) as XADD takes them: the
    original fields as they were, then the DLQ's own."""
    extra: dict[bytes | str, bytes | str] = {
        "error": rejection.error,
        "errorType": rejection.error_type,
        "originalId": rejection.entry_id,
        "deliveries": str(rejection.deliveries),
        "failedAt": failed_at,
    }
    flat: list[bytes | str] = []
    for key, value in [*rejection.fields.items(), *extra.items()]:
        flat += (key, value)
    return flat


def decode_dead_letter(dlq_id: object, raw: Mapping[bytes, bytes]) -> DeadLetter:
    """A DLQ entry as a `DeadLetter`; never raises."""
    text = decode_text_fields(raw)
    deliveries = text.get("deliveries", "0")
    return DeadLetter(
        dlq_id=lenient_text(dlq_id),
        original_id=text.get("originalId", ""),
        error_type=text.get("errorType", ""),
        error=text.get("error", ""),
        deliveries=int(deliveries) if deliveries.isascii() and deliveries.isdigit() else 0,
        failed_at=text.get("failedAt", ""),
        fields={k: v for k, v in text.items() if k not in DLQ_FIELDS},
    )
