"""Test-only fail points: `KALEIDO_FAILPOINTS=sync.after_move,...` makes the process SIGKILL
itself when it reaches a named point, so crash tests can stop it between two protocol steps.

Unset in production: `hit()` is then one set lookup on an empty set.
"""

from __future__ import annotations

import os
import signal

ENV = "KALEIDO_FAILPOINTS"
_armed = frozenset(p for p in os.environ.get(ENV, "").split(",") if p)


def hit(name: str) -> None:
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
