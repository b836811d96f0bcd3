"""The docs site builds with `mkdocs build --strict` (a broken link, a missing anchor or a page
left out of the navigation fails), its hook puts the last runs' reports in, and the README stays
a front page: at most 200 lines, its Layout naming every top-level module of `kaleido/`."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from .conftest import REPO

README = REPO / "README.md"
README_MAX_LINES = 200


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load(REPO / "scripts" / "docs_hooks.py")


def test_the_site_builds_with_strict_checks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "views" / "index.html").is_file()


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move some to docs/"
    commands = [line.split()[0:2] for line in lines if line.startswith("make ")]
    assert commands[:2] == [["make", "run"], ["make", "test"]]


def _layout() -> str:
    return README.read_text("utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]


def top_level_modules() -> set[str]:
    kaleido = REPO / "kaleido"
    modules = {p.name for p in kaleido.glob("*.py") if not p.name.startswith("__")}
    modules |= {f"{p.name}/" for p in kaleido.iterdir() if (p / "__init__.py").is_file()}
    return modules


def test_the_layout_names_every_top_level_module_service_first() -> None:
    layout = _layout()
    named = set(re.findall(r"(?<![\w/.])([a-z_]+\.py|[a-z_]+/)", layout))
    missing = top_level_modules() - named
    assert not missing, f"README.md's Layout does not name {sorted(missing)}"
    first = re.search(r"^kaleido/\n\s+(\S+)", layout, re.MULTILINE)
    assert first is not None and first[1] == "service.py"  # the composition root


def test_reports_come_from_the_last_run_else_the_tracked_copy(tmp_path: Path) -> None:
    page = "before\n<!-- report: tests/FUZZ.md -->\nafter\n"
    assert "No run has written `tests/FUZZ.md` yet" in hooks.include_reports(page, tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "FUZZ.md").write_text("| tracked | 1 |\n")
    shown = hooks.include_reports(page, tmp_path)
    assert "| tracked | 1 |" in shown and "From `tests/FUZZ.md`" in shown
    run = tmp_path / ".state" / "reports" / "tests"
    run.mkdir(parents=True)
    (run / "FUZZ.md").write_text("# A title the page replaces\n| last run | 2 |\n")
    shown = hooks.include_reports(page, tmp_path)
    assert "| last run | 2 |" in shown and "tracked" not in shown and "A title" not in shown
    assert shown.startswith("before\n") and shown.endswith("after\n")


def test_the_openapi_documents_are_linked_only_when_present(tmp_path: Path) -> None:
    page = "# HTTP API\n\n<!-- openapi-documents -->\n"
    assert hooks.openapi_links(page, tmp_path) == "# HTTP API\n\n\n"
    (tmp_path / "openapi.yaml").write_text("openapi: 3.1.0\n")
    assert "[the public listener's](openapi.yaml)" in hooks.openapi_links(page, tmp_path)


def test_a_campaign_run_on_this_machine_comes_first(tmp_path: Path) -> None:
    page = "# Fault campaign: last figures\n\nTracked sections.\n"
    assert hooks.campaign_run(page, tmp_path / "none.md") == page
    run = tmp_path / "REPORT.md"
    run.write_text("# Fault campaign report\n\n### mixed on a single Redis (AOF)\n")
    shown = hooks.campaign_run(page, run)
    assert shown.index("### mixed") < shown.index("Tracked sections.")
