"""deploy/prometheus/: the rules pass `promtool check rules` and their unit tests `promtool test
rules`, the example configuration `promtool check config`; every alert says how bad it is and
what to check first, has a unit test where it fires and one where it must not, and alerts at the
thresholds of kaleido.ops.limits (those of the metrics reporter and `kaleido doctor`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaleido.ops.limits import (
    IDLE_LIMIT,
    LAG_LIMIT,
    MEMORY_PROBLEM,
    MEMORY_WARNING,
    PENDING_AGE_LIMIT,
    STALE_SYNC_INTERVALS,
)
from kaleido.settings import Settings
from kaleido.views.sync import BACKLOG_MAX_POSTS

from .conftest import REPO
from .tools import require_tool

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "kaleido-rules.yml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))

# Alert → the figure its expression compares with last.
THRESHOLDS = {
    "KaleidoRedisMemoryHigh": MEMORY_WARNING,
    "KaleidoRedisMemoryCritical": MEMORY_PROBLEM,
    "KaleidoStreamLagHigh": LAG_LIMIT,
    "KaleidoStreamPendingStuck": PENDING_AGE_LIMIT,
    "KaleidoSyncStale": STALE_SYNC_INTERVALS * Settings().sync_interval,
    "KaleidoUnknownPostBacklogHigh": 0.8 * BACKLOG_MAX_POSTS,
}
_LAST_COMPARISON = re.compile(r"(?:>=?|<=?|==|!=)\s*([0-9.eE+]+)\s*$")


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def promtool(*args: str | Path) -> str:
    """Run promtool; its output, or the test fails with it."""
    found = require_tool("promtool", "`make bootstrap-test` unpacks it into .venv/bin")
    done = subprocess.run(
        [found, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_rules_pass_promtool_check() -> None:
    output = promtool("check", "rules", RULES)
    assert f"SUCCESS: {len(alerts())} rules found" in output


def test_example_config_passes_promtool_check() -> None:
    promtool("check", "config", PROMETHEUS / "prometheus.yml")


def test_rule_unit_tests_pass() -> None:
    assert UNIT_TESTS
    output = promtool("test", "rules", *UNIT_TESTS)
    assert output.count("SUCCESS") == len(UNIT_TESTS), output


def test_every_alert_has_duration_severity_and_guidance() -> None:
    found = alerts()
    assert len(found) >= 12
    for name, rule in found.items():
        assert "for" in rule, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= notes.keys(), name
        # Each names what fired: the value or the labels of the series.
        assert "{{ $value" in notes["summary"] or "{{ $labels." in notes["summary"], name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts())
    assert names - firing == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they must not fire"
    assert firing | quiet <= names, "tests of alerts that do not exist"


def test_thresholds_are_those_of_the_reporter_and_doctor() -> None:
    found = alerts()
    for name, figure in THRESHOLDS.items():
        expr = " ".join(found[name]["expr"].split())
        match = _LAST_COMPARISON.search(expr)
        assert match is not None, (name, expr)
        assert float(match.group(1)) == pytest.approx(figure), (name, expr)
    idle = found["KaleidoStreamIdleConsumers"]["annotations"]["description"]
    assert f"over {IDLE_LIMIT:g} s" in " ".join(idle.split())


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"KALEIDO_REQUIRE_TOOLS": "1"}, pytest.fail.Exception),
        ({"CI": "false"}, pytest.skip.Exception),
        ({}, pytest.skip.Exception),
    ],
)
def test_a_missing_promtool_fails_where_tools_are_required(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    environ: dict[str, str],
    outcome: type[BaseException],
) -> None:
    monkeypatch.setenv("PATH", "")
    # nor beside the interpreter, where `make bootstrap-test` unpacks it
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    for name in ("CI", "KALEIDO_REQUIRE_TOOLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(outcome, match="promtool not found"):
        promtool("check", "rules", RULES)
