"""Copy the latest benchmark table (benchmarks/RESULTS.md, written by `make bench`), fault table
(tests/faults/REPORT.md, written by the fault suite) and fuzz counts (tests/FUZZ.md, written by
tests/test_fuzz.py) into README.md between their markers. Run from the repository root:
`python scripts/readme_tables.py`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def main() -> None:
    readme = (ROOT / "README.md").read_text()
    readme = put(readme, "bench", bench_block((ROOT / "benchmarks/RESULTS.md").read_text()))
    faults = (ROOT / "tests/faults/REPORT.md").read_text().strip() + "\n"
    readme = put(readme, "faults", faults)
    fuzz = (ROOT / "tests/FUZZ.md").read_text().strip() + "\n"
    readme = put(readme, "fuzz", fuzz)
    (ROOT / "README.md").write_text(readme)


if __name__ == "__main__":
    main()
