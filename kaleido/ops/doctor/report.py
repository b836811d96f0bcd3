"""`kaleido doctor`'s report on a terminal: one line per finding, its hint, then a verdict."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from kaleido.ops.doctor.findings import Finding, Level

_STYLE = {Level.OK: "green", Level.WARNING: "yellow", Level.PROBLEM: "bold red"}


def print_report(console: Console, findings: Sequence[Finding], header: str = "") -> None:
    """One line per finding (and its hint), then a summary; never wrapped mid-word."""
    if header:
        console.print(header, style="bold", soft_wrap=True, markup=False)
    for f in findings:
        line = Text.assemble(
            (f"{f.level.name:<8} ", _STYLE[f.level]), (f"{f.check}: ", "bold"), f.message
        )
        console.print(line, soft_wrap=True)
        if f.hint and f.level is not Level.OK:
            console.print(Text(f"         → {f.hint}", style="dim"), soft_wrap=True)
    problems = sum(1 for f in findings if f.level is Level.PROBLEM)
    warnings = sum(1 for f in findings if f.level is Level.WARNING)
    verdict = "problems found" if problems else "no problems"
    counts = f"{_plural(problems, 'problem')}, {_plural(warnings, 'warning')}"
    style = _STYLE[Level.PROBLEM if problems else Level.OK]
    console.print(Text(f"doctor: {verdict} ({counts})", style=style), soft_wrap=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
