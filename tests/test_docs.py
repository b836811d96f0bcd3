"""Documents the code cites (`docs/X.md`, its "section N" or a quoted heading) exist in the repo."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEARCHED = ("kaleido", "actors", "tests", "benchmarks", "scripts")
SUFFIXES = {".py", ".sql", ".sh", ".toml", ".conf"}

# docs/NAME.md, then optionally: section 3 | sections 2 and 3 | "A heading"
CITATION = re.compile(
    r"(?P<doc>docs/[\w-]+\.md)"
    r"(?:\s+sections?\s+(?P<sections>\d+[a-z]?(?:(?:,\s*|\s+and\s+)\d+[a-z]?)*)"
    r"|\s+\"(?P<heading>[^\"\n]+)\")?"
)


def citations(text: str) -> list[tuple[str, list[str], str | None]]:
    """(document, cited section numbers, cited heading) for each citation in `text`."""
    found = []
    for m in CITATION.finditer(text):
        sections = re.findall(r"\d+[a-z]?", m["sections"] or "")
        found.append((m["doc"], sections, m["heading"]))
    return found


def headings(doc: Path) -> list[str]:
    return [
        line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")
    ]


def broken(doc_name: str, sections: list[str], heading: str | None) -> list[str]:
    doc = ROOT / doc_name
    if not doc.is_file():
        return [f"{doc_name} does not exist"]
    titles = headings(doc)
    problems = [
        f"{doc_name} has no section {n}"
        for n in sections
        if not any(t.startswith(f"{n}. ") for t in titles)
    ]
    if heading is not None and heading not in titles:
        problems.append(f'{doc_name} has no heading "{heading}"')
    return problems


def _sources() -> list[Path]:
    files = [p for d in SEARCHED for p in (ROOT / d).rglob("*") if p.suffix in SUFFIXES]
    return [p for p in files if p.is_file() and p != Path(__file__)] + [ROOT / "Makefile"]


def test_cited_documents_sections_and_headings_exist() -> None:
    problems = []
    count = 0
    for path in _sources():
        for doc, sections, heading in citations(path.read_text(errors="replace")):
            count += 1
            where = path.relative_to(ROOT).as_posix()
            problems += [f"{where}: {p}" for p in broken(doc, sections, heading)]
    assert count >= 5  # the walk found the citations (a vacuous pass would hide a broken walk)
    assert problems == []


def test_the_citation_check_catches_what_is_broken() -> None:
    text = (
        'docs/CONTRACT.md sections 2 and 3; docs/DESIGN.md "View counting"; '
        'docs/DESIGN.md "No such heading"; docs/CONTRACT.md section 99; docs/NOPE.md'
    )
    cited = citations(text)
    assert cited[0] == ("docs/CONTRACT.md", ["2", "3"], None)
    assert cited[1] == ("docs/DESIGN.md", [], "View counting")
    problems = [p for c in cited for p in broken(*c)]
    assert problems == [
        'docs/DESIGN.md has no heading "No such heading"',
        "docs/CONTRACT.md has no section 99",
        "docs/NOPE.md does not exist",
    ]
