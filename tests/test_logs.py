"""The JSON log format: one parseable object per line, through the bytes path (a real stream)
and the text path (a buffer); no local variables in tracebacks; odd values never break a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from kaleido.logs import configure_logging, get_logger


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    saved["processors"] = list(saved["processors"])
    try:
        yield
    finally:
        structlog.configure(**saved)


def log_some_lines() -> None:
    log = get_logger("tests.logs")
    log.info("odd.values", big=2**70, by_id={1: "one"}, path=Path("/tmp/x"), error=ValueError("v"))
    password = "postgresql://kaleido:hunter2@db/kaleido"  # noqa: F841 - a local of the frame
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it.failed")


def parsed(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def check(lines: list[dict[str, Any]]) -> None:
    odd, failed = lines
    assert odd["event"] == "odd.values" and odd["big"] == 2**70 and odd["by_id"] == {"1": "one"}
    assert odd["level"] == "info" and odd["component"] == "tests.logs"
    assert failed["exception"][0]["exc_type"] == "RuntimeError"
    assert "hunter2" not in json.dumps(failed)


def test_json_lines_on_a_text_buffer(restore_structlog: None) -> None:
    buffer = io.StringIO()
    configure_logging("json", logging.INFO, stream=buffer)
    log_some_lines()
    check(parsed(buffer.getvalue()))


def test_json_lines_on_a_binary_stream(restore_structlog: None, tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as out:
        configure_logging("json", logging.INFO, stream=out)
        log_some_lines()
    check(parsed((tmp_path / "log").read_text()))
