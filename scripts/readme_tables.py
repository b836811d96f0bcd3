"""Refresh the tables the README quotes from the last runs: the fault table
(tests/faults/REPORT.md), the fuzz counts (tests/FUZZ.md) and the benchmark table
(benchmarks/RESULTS.md).

Test runs and `make bench` write their reports under .state/reports/ (untracked), at the tracked
file's path; KALEIDO_REFRESH_REPORTS=1 makes them write the tracked copies instead. This script
copies each report a run left under .state/reports/ over its tracked copy, then pastes the
tracked copies into README.md between their markers. Run from the repository root after the
runs: `python scripts/readme_tables.py`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_REPORTS = ROOT / ".state" / "reports"
FAULTS = ROOT / "tests" / "faults" / "REPORT.md"
FUZZ = ROOT / "tests" / "FUZZ.md"
BENCH = ROOT / "benchmarks" / "RESULTS.md"


def bench_block(results: str) -> str:
    lines = results.splitlines()
    heading = next(line for line in lines if line.startswith("`make bench"))
    table = [line for line in lines if line.startswith("|")]
    summary = next(line for line in lines if line.startswith("Targets:"))
    return "\n".join([heading, "", *table, "", summary]) + "\n"


def put(text: str, name: str, body: str) -> str:
    marker = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not marker.search(text):
        raise SystemExit(f"README.md: no <!-- {name}:start/end --> markers")
    return marker.sub(lambda m: m.group(1) + body + m.group(2), text)


def take_run_report(tracked: Path) -> None:
    """Copy the last run's report over `tracked`, when a run left one."""
    run = RUN_REPORTS / tracked.relative_to(ROOT)
    if run.is_file():
        shutil.copyfile(run, tracked)
        print(f"{tracked.relative_to(ROOT)} <- {run.relative_to(ROOT)}")


def main() -> None:
    for tracked in (FAULTS, FUZZ, BENCH):
        take_run_report(tracked)
    readme = (ROOT / "README.md").read_text()
    readme = put(readme, "bench", bench_block(BENCH.read_text()))
    readme = put(readme, "faults", FAULTS.read_text().strip() + "\n")
    readme = put(readme, "fuzz", FUZZ.read_text().strip() + "\n")
    (ROOT / "README.md").write_text(readme)
    print("README.md: tables pasted")


if __name__ == "__main__":
    main()
