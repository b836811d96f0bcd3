"""How the `kaleido` commands report: which deployment they act on (one line on stderr), one
JSON object with `--json`, progress lines on stderr while a long command works.

Every `--json` object starts with the same two keys, `command` (`"dlq replay"`) and `stack`
(`{"source": "dev" | "settings", "redis": ..., "database": ..., "stateFile": ...}`, passwords
redacted); the result's own keys follow, named as the matching HTTP route names them
(`/v1/admin/sync`, `/v1/admin/streams`, `/v1/admin/dlq/{stream}/replay`). Standard output
holds only the result, so `kaleido streams --json | jq` works; the rest goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import attrs

from kaleido.dev_access import DevStackFound
from kaleido.secret_settings import redact_url
from kaleido.settings import Settings


@attrs.frozen
class Stack:
    """The deployment a command acts on and where its URLs came from."""

    settings: Settings
    found: DevStackFound | None = None

    def describe(self) -> str:
        if self.found is not None:
            return self.found.describe()
        return f"{redact_url(self.settings.redis_url)} and {redact_url(self.settings.database_url)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "source": "dev" if self.found is not None else "settings",
            "redis": redact_url(self.settings.redis_url) or None,
            "database": redact_url(self.settings.database_url) or None,
            "stateFile": str(self.found.path) if self.found is not None else None,
        }


def announce(command: str, stack: Stack) -> None:
    """The one line that says which deployment a command acts on."""
    print(f"kaleido {command}: on {stack.describe()}", file=sys.stderr, flush=True)


def print_json(command: str, stack: Stack | None, result: dict[str, Any]) -> None:
    envelope: dict[str, Any] = {"command": command, "stack": stack.as_json() if stack else None}
    envelope.update(result)
    print(json.dumps(envelope), flush=True)


@attrs.define
class Progress:
    """Progress lines on stderr (`kaleido dlq replay: 3000 of 12000 replayed`), at most one
    every `every` seconds plus the last, so a long command shows it is working without
    flooding a terminal or a CI log."""

    label: str
    every: float = 1.0
    _last: float = attrs.field(init=False, default=float("-inf"))
    shown: int = attrs.field(init=False, default=0)

    def update(self, text: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last >= self.every:
            self._last = now
            self.shown += 1
            print(f"{self.label}: {text}", file=sys.stderr, flush=True)
