"""Threshold alerts as log lines: one warning when a condition starts, one info line when it
clears, nothing in between (a sample every few seconds must not flood the logs)."""

from __future__ import annotations

from typing import Any

import attrs

from kaleido.logs import get_logger

log = get_logger("kaleido.alerts")


@attrs.define
class Alerts:
    """Remembers which named conditions are active; `active` lists them (for tests and top)."""

    active: dict[str, dict[str, Any]] = attrs.Factory(dict)

    def update(self, name: str, crossed: bool, message: str = "", **details: Any) -> bool:
        """Record the condition's state; log only when it changes. Return `crossed`."""
        if crossed and name not in self.active:
            self.active[name] = details
            log.warning("alert.raised", alert=name, message=message, **details)
        elif not crossed and name in self.active:
            del self.active[name]
            log.info("alert.cleared", alert=name, **details)
        elif crossed:
            self.active[name] = details  # still on: keep the latest figures, say nothing
        return crossed
