"""The red-team suite's report: one row per attack (a test function, all its cases) and how it
ended, written when the session ends to .state/reports/tests/redteam/REPORT.md (with
KALEIDO_REFRESH_REPORTS=1, the tracked tests/redteam/REPORT.md; see tests/reports.py).
docs/resilience.md shows it."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import attrs
import pytest

from ..reports import report_path

TRACKED = Path(__file__).with_name("REPORT.md")


@attrs.define
class Outcomes:
    """How each case of each attack ended: (test file, attack) → outcome → cases."""

    attacks: dict[tuple[str, str], Counter[str]] = attrs.field(factory=dict)

    def record(self, item: pytest.Item, report: pytest.TestReport) -> None:
        if report.when == "call" or report.failed or report.skipped:
            outcome = "held" if report.passed else "skipped" if report.skipped else "FAILED"
            key = (Path(item.path).name, attack(item))
            self.attacks.setdefault(key, Counter())[outcome] += 1

    def render(self) -> str:
        held = sum(1 for outcomes in self.attacks.values() if set(outcomes) == {"held"})
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        lines = [
            f"{len(self.attacks)} attacks, {held} held in every case; {when} UTC.",
            "",
            "| attack | test file | outcome |",
            "|---|---|---|",
        ]
        for (file, name), outcomes in sorted(self.attacks.items()):
            lines.append(f"| {name} | `{file}` | {_outcome(outcomes)} |")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        if self.attacks:
            report_path(TRACKED).write_text(self.render())


def _outcome(outcomes: Counter[str]) -> str:
    total = sum(outcomes.values())
    if set(outcomes) == {"held"}:
        return "held" if total == 1 else f"held ({total} cases)"
    return ", ".join(f"{outcome} {n} of {total}" for outcome, n in sorted(outcomes.items()))


def attack(item: pytest.Item) -> str:
    """The attack a test stands for, as its name says it (tests are named as sentences)."""
    name = getattr(item, "originalname", item.name)
    return name.removeprefix("test_").replace("_", " ")
