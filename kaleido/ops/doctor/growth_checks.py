"""Judges of growth: each table, stream and key that grows with traffic or time, measured
against the bound docs/bounds.md gives it. A structure past its bound means what enforces the
bound is not running (no sync, no consumer, no relay) or was configured away; a warning, since
nothing is lost yet. Pure functions of :class:`Measure` facts (read by
``gather.read_pg_growth`` and ``gather.read_redis_growth``)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.ops.doctor.findings import Finding, Level


@attrs.frozen
class Measure:
    """One structure's size (or its oldest item's age) against its bound."""

    what: str  # e.g. "view_sync_batches"
    size: float
    bound: float
    unit: str  # "rows", "entries", "days", ...
    hint: str = ""  # what enforces the bound: where to look when it is exceeded
    detail: str = ""  # more figures, shown as they are
    capped: bool = False  # `size` is a floor: counting stopped there


def check_growth(measures: Sequence[Measure]) -> list[Finding]:
    """One finding per structure: OK within its bound, a warning past it."""
    out = []
    for m in measures:
        size = f"over {_figure(m.size)}" if m.capped else _figure(m.size)
        message = f"{size} {m.unit} of {_figure(m.bound)} {m.unit} at most"
        if m.detail:
            message += f" ({m.detail})"
        level = Level.WARNING if m.size > m.bound else Level.OK
        out.append(Finding(f"growth {m.what}", level, message, m.hint if level else ""))
    return out


def _figure(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:.1f}"
