"""External tools some tests need (promtool, systemd-analyze): a test without its tool skips
on a developer's machine, but fails where the tools must be there, so that CI cannot pass
by skipping what it was meant to check."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

# Set to 1 to fail rather than skip without a tool (CI, set by most CI services, does too).
REQUIRE_ENV = "KALEIDO_REQUIRE_TOOLS"


def tools_required(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name, "").lower() not in ("", "0", "false") for name in ("CI", REQUIRE_ENV))


def require_tool(name: str, installed_by: str) -> str:
    """The path of `name`; without it, the test fails (CI, KALEIDO_REQUIRE_TOOLS=1) or skips,
    saying what installs it."""
    # `make bootstrap-test` unpacks promtool into the virtualenv when the machine has none.
    beside_python = Path(sys.executable).with_name(name)
    found = shutil.which(name) or (str(beside_python) if beside_python.is_file() else None)
    if found is not None:
        return found
    message = f"{name} not found: {installed_by}"
    if tools_required():
        pytest.fail(f"{message} (required: CI or {REQUIRE_ENV}=1 is set)")
    pytest.skip(message)
