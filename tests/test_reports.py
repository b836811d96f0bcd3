"""A test run writes its reports outside the tracked tree unless asked to refresh them."""

from __future__ import annotations

from .conftest import REPO
from .faults.conftest import REPORT as FAULT_REPORT
from .redteam.report import TRACKED as REDTEAM_TRACKED
from .reports import REFRESH_ENV, RUN_REPORTS, report_path
from .test_fuzz import REPORT as FUZZ_REPORT

TRACKED = REPO / "tests" / "FUZZ.md"


def test_reports_go_under_the_state_folder_by_default() -> None:
    assert report_path(TRACKED, {}) == RUN_REPORTS / "tests" / "FUZZ.md"
    assert report_path(TRACKED, {REFRESH_ENV: "0"}) == RUN_REPORTS / "tests" / "FUZZ.md"
    assert (RUN_REPORTS / "tests").is_dir()


def test_refreshing_writes_the_tracked_copy() -> None:
    assert report_path(TRACKED, {REFRESH_ENV: "1"}) == TRACKED


def test_the_suites_use_it() -> None:
    assert report_path(TRACKED) == FUZZ_REPORT
    assert report_path(REPO / "tests" / "faults" / "REPORT.md") == FAULT_REPORT
    assert report_path(REDTEAM_TRACKED) == RUN_REPORTS / "tests" / "redteam" / "REPORT.md"
