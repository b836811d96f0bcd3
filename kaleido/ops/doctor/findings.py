"""What a check says: a :class:`Finding` at a :class:`Level`, and the exit code they add up to."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    PROBLEM = 2


@attrs.frozen
class Finding:
    check: str
    level: Level
    message: str
    hint: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "level": self.level.name.lower(),
            "message": self.message,
            "hint": self.hint,
        }


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(f.level is Level.PROBLEM for f in findings) else 0


def on_node(finding: Finding, node: str) -> Finding:
    """A finding about one master of a cluster names it."""
    if not node:
        return finding
    return attrs.evolve(finding, message=f"{node}: {finding.message}")
