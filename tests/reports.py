"""Where a test run writes its reports (the fuzz counts, the fault table).

By default under `.state/reports/` (untracked), at the tracked file's path: a test run never
changes the tree. `KALEIDO_REFRESH_REPORTS=1` writes the tracked copies instead (`tests/FUZZ.md`,
`tests/faults/REPORT.md`, `tests/redteam/REPORT.md`). The docs site shows a run's report when
there is one, else the tracked copy (`scripts/docs_hooks.py`; docs/resilience.md "How the
tables get here").
"""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import REPO

REFRESH_ENV = "KALEIDO_REFRESH_REPORTS"
RUN_REPORTS = REPO / ".state" / "reports"


def report_path(tracked: Path, environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """The file to write the report whose tracked copy is `tracked`; its folder exists."""
    if environ.get(REFRESH_ENV) == "1":
        return tracked
    path = RUN_REPORTS / tracked.relative_to(REPO)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
