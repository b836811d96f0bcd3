"""mkdocs hooks (mkdocs.yml `hooks:`): put the last runs' reports into the site.

Test runs and `make bench` write their reports under `.state/reports/` at the tracked file's
path (`tests/reports.py`), and `make torture` to `.state/campaign/REPORT.md`; none of them
changes a tracked file unless asked to (`KALEIDO_REFRESH_REPORTS=1`, `REFRESH=1`). A page says
where a report goes with `<!-- report: tests/faults/REPORT.md -->`; the build puts there the
last run's report when this machine has one, else the tracked copy. The HTTP API page links
the OpenAPI documents only when they are in docs/ (`<!-- openapi-documents -->`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_REPORTS = ROOT / ".state" / "reports"
CAMPAIGN_RUN = ROOT / ".state" / "campaign" / "REPORT.md"
_REPORT = re.compile(r"<!-- report: (?P<path>[\w./-]+) -->")
_OPENAPI = "<!-- openapi-documents -->"
# (document in docs/, the listener it describes)
_OPENAPI_DOCUMENTS = (("openapi.yaml", "public"), ("openapi-ops.yaml", "ops"))


def report_source(tracked: str, root: Path = ROOT) -> Path | None:
    """The file to show for the report tracked at `tracked`: the last run's, else the
    tracked copy, else None."""
    for candidate in (root / ".state" / "reports" / tracked, root / tracked):
        if candidate.is_file():
            return candidate
    return None


def _body(text: str) -> str:
    """A report without its own title (the page gives it one)."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"


def include_reports(markdown: str, root: Path = ROOT) -> str:
    def report(match: re.Match[str]) -> str:
        source = report_source(match["path"], root)
        if source is None:
            return f"*No run has written `{match['path']}` yet.*\n"
        where = source.relative_to(root).as_posix()
        return f"{_body(source.read_text('utf-8'))}\n<small>From `{where}`.</small>\n"

    return _REPORT.sub(report, markdown)


def openapi_links(markdown: str, docs_dir: Path) -> str:
    present = [(name, side) for name, side in _OPENAPI_DOCUMENTS if (docs_dir / name).is_file()]
    if not present:
        return markdown.replace(_OPENAPI, "")
    links = ", ".join(f"[the {side} listener's]({name})" for name, side in present)
    return markdown.replace(_OPENAPI, f"The OpenAPI 3.1 documents: {links}.")


def campaign_run(markdown: str, run: Path = CAMPAIGN_RUN) -> str:
    """The campaign page with this machine's last `make torture` report first, when there is
    one (the tracked sections follow)."""
    if not run.is_file():
        return markdown
    title, _, rest = markdown.partition("\n")
    last = _body(run.read_text("utf-8"))
    heading = "## The last run on this machine (`.state/campaign/REPORT.md`)"
    return f"{title}\n\n{heading}\n\n{last}\n{rest}"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markdown = include_reports(markdown)
    markdown = openapi_links(markdown, Path(config["docs_dir"]))
    if page.file.src_uri == "campaign-report.md":
        markdown = campaign_run(markdown)
    return markdown
