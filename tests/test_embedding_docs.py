"""docs/embedding.md's snippets run as shown: settings, open_kaleido, logging and the pytest
plugin in a user's own suite (the host program with its own SIGINT: tests/test_embedding.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kaleido
from kaleido.gateways import Backends
from kaleido.testing import NEEDS

from .docs_snippets import REPO, snippet, snippets
from .views_helpers import pg_view_counts

DOC = "docs/embedding.md"


def run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(code, DOC, "exec"), namespace)
    return namespace


def test_every_python_snippet_compiles() -> None:
    found = snippets(DOC)
    assert {"settings", "open_kaleido", "host_program", "logging", "plugin_test"} <= set(found)
    for name, code in found.items():
        if name != "pytest_config":
            ast.parse(code, f"{DOC}:{name}")


def test_the_settings_snippet_prints_one_error_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = snippet(DOC, "settings")
    run(code)
    shown = code.split("# ", 1)[1].strip()
    assert capsys.readouterr().out.strip() == shown


async def test_the_open_kaleido_snippet(settings: kaleido.Settings, backends: Backends) -> None:
    await run(snippet(DOC, "open_kaleido"))["record_and_read"](settings)
    assert await pg_view_counts(backends) == {17: 2}


def test_the_logging_snippet_silences_kaleido() -> None:
    code = snippet(DOC, "logging") + (
        "from kaleido.logs import get_logger\nget_logger('kaleido.test').critical('not shown')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert (done.stdout, done.stderr) == ("", "")


def user_suite(tmp_path: Path, config: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / "test_user.py").write_text(snippet(DOC, "plugin_test"))
    return tmp_path


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_users_suite_passes_with_the_documented_configuration(tmp_path: Path) -> None:
    done = pytest_in(user_suite(tmp_path, snippet(DOC, "pytest_config")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_without_trio_mode_the_plugin_says_what_it_needs_in_one_line(tmp_path: Path) -> None:
    for config, args in (("", ()), (snippet(DOC, "pytest_config"), ("-p", "no:trio"))):
        done = pytest_in(user_suite(tmp_path, config), *args)
        assert done.returncode != 0
        assert NEEDS in done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr


def test_the_plugin_imports_nothing_of_kaleido_until_a_fixture_is_used() -> None:
    code = (
        "import sys, kaleido.testing; "
        "loaded = sorted(m for m in sys.modules if m.startswith('kaleido')); "
        "assert loaded == ['kaleido', 'kaleido.testing'], loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)
