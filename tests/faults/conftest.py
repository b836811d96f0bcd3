"""The fault suite's report: one table, a row per scenario, rewritten by each session, under
.state/reports/ (with KALEIDO_REFRESH_REPORTS=1: tests/faults/REPORT.md, the tracked copy the docs
site falls back to; see tests/reports.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..reports import report_path

REPORT = report_path(Path(__file__).with_name("REPORT.md"))
REPORT_HEADER = (
    "| fault | views lost | views doubled | entries lost | entries stuck | recovery | note |\n"
    "|---|---|---|---|---|---|---|\n"
)


@pytest.fixture(scope="session", autouse=True)
def report_file() -> None:
    REPORT.write_text(REPORT_HEADER)
