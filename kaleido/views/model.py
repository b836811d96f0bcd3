"""Validation of ids and the small value types of view counting."""

from __future__ import annotations

import attrs

from kaleido.errors import Invalid

MAX_ID = 2**63 - 1


def check_id(value: object, name: str) -> int:
    """Return `value` as a positive 64-bit id, or raise ValueError naming `name`.

    Accepts ints and strings of decimal digits; bools, floats and anything else are refused.
    """
    try:
        return positive_id(value)
    except Invalid as exc:
        raise ValueError(f"{name}: {exc}") from None


def positive_id(value: object) -> int:
    """`value` as a positive 64-bit id (see `check_id`), or `Invalid` saying why."""
    if isinstance(value, bool):
        raise Invalid(f"expected a positive 64-bit integer, got {value!r:.80}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise Invalid(f"expected a positive 64-bit integer, got {value!r:.80}")
    if not 0 < number <= MAX_ID:
        raise Invalid(f"expected a positive 64-bit integer, got {value!r:.80}")
    return number


@attrs.frozen
class RecordResult:
    """Outcome of a batch of views once it is durable in Redis (or the fallback)."""

    counted: int
    duplicates: int

    @property
    def accepted(self) -> int:
        return self.counted + self.duplicates


@attrs.frozen
class SyncReport:
    """What one sync run did."""

    batches: int = 0
    posts: int = 0
    views: int = 0
    recovered_batches: int = 0
    skipped_batches: int = 0  # batches found already applied (a crash after COMMIT)
    journal_views: int = 0  # views replayed from the journal (taken while Redis was down)
    backlog_dropped_views: int = 0  # views of posts that never got a row, dropped (bounds)
    backlog_posts: int = -1  # posts without a row holding views after the sync (-1: unknown)
    forgotten_batches: int = 0  # applied batch ids past their retention, pruned (bounds)
