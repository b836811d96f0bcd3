"""The command line's conventions, without servers: the version in one place, `python -m
kaleido`, each command's help listing only what it reads, completion, `--json`, progress lines,
a busy port and `--dev` with URLs as one line each."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import kaleido
from kaleido import cli_parser
from kaleido.cli import main
from kaleido.cli_output import Progress
from kaleido.completion import bash_completion, command_words
from kaleido.errors import ConfigError
from kaleido.ports import check_listen_addresses
from kaleido.secret_settings import flag
from kaleido.settings import Settings, setting_names

from .conftest import REPO
from .processes import kaleido_env

SECRET = base64.b64encode(b"a key of the cli tests, 32 bytes").decode()


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=kaleido_env(KALEIDO_LOG_FORMAT="console", **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_version_in_the_package_the_project_and_the_changelog() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == kaleido.__version__ == "0.2.0"
    changelog = (REPO / "CHANGELOG.md").read_text()
    first_release = re.search(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert first_release and first_release.group(1) == kaleido.__version__


def test_version_and_python_dash_m() -> None:
    version = run("-m", "kaleido", "--version")
    assert version.returncode == 0 and version.stdout == f"kaleido {kaleido.__version__}\n"
    helped = run("-m", "kaleido", "doctor", "--help")
    assert helped.returncode == 0 and "usage: kaleido doctor" in helped.stdout


def help_flags(capsys: pytest.CaptureFixture[str], *args: str) -> set[str]:
    with pytest.raises(SystemExit):
        main([*args, "--help"])
    return set(re.findall(r"--[a-z0-9-]+", capsys.readouterr().out))


def expected_flags(names: tuple[str, ...]) -> set[str]:
    flags = set()
    for name in names:
        if name not in ("admin_token", "jwt_secret", "service_token"):  # secrets: no flag
            flags.add(flag(name))
        if name in ("redis_url", "database_url", "admin_token", "jwt_secret", "service_token"):
            flags.add(flag(name) + "-file")
    return flags


@pytest.mark.parametrize(
    "command", ["sync", "doctor", "streams", "dlq list", "dlq replay", "top", "token", "redis-acl"]
)
def test_a_commands_help_lists_only_the_settings_it_reads(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    names = cli_parser.COMMAND_SETTINGS[command.split()[0]]
    assert names is not None
    every_setting = expected_flags(setting_names())
    shown = help_flags(capsys, *command.split()) & every_setting
    assert shown == expected_flags(names)
    assert len(shown) <= 12  # not the service's 40-odd


def test_run_lists_every_setting_and_the_bare_command_only_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert expected_flags(setting_names()) <= help_flags(capsys, "run")
    top_level = help_flags(capsys)
    assert "--workers" not in top_level and {"--version", "--dev"} <= top_level
    # ... yet `kaleido --workers 2 --dev` (run's flags before no command) still parses.
    args = cli_parser.build_parser().parse_args(["--dev", "--workers", "2"])
    assert args.dev and args.workers == "2" and args.command is None


def test_every_command_that_prints_a_result_takes_json() -> None:
    words = command_words(cli_parser.build_parser())
    for command in ("sync", "doctor", "streams", "dlq list", "dlq replay", "dlq purge", "token"):
        assert "--json" in words[command], command


def test_token_json_has_the_common_keys() -> None:
    # A process of its own: the command configures the process's logging.
    done = run(str(REPO / "run.py"), "token", "--user-id", "7", "--json", KALEIDO_JWT_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert list(body)[:2] == ["command", "stack"] and body["command"] == "token"
    assert body["userId"] == 7 and body["token"].count(".") == 2


def completions(script: str, *words: str) -> list[str]:
    """What bash offers after `kaleido WORDS` (the last word is the one being completed)."""
    line = " ".join(("kaleido", *words))
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _kaleido; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_offers_commands_then_their_options() -> None:
    script = bash_completion(cli_parser.build_parser())
    assert completions(script, "dl") == ["dlq"]
    assert completions(script, "dlq", "re") == ["replay"]
    assert set(completions(script, "dlq", "replay", "--")) >= {"--limit", "--id", "--json"}
    assert "--workers" not in completions(script, "doctor", "--")
    assert "--workers" in completions(script, "run", "--w")
    printed = run(str(REPO / "run.py"), "completion", "bash")
    assert printed.returncode == 0 and printed.stdout == script


def test_progress_lines_are_throttled_but_the_last_is_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("kaleido dlq replay", every=3600)
    for n in range(1, 500):
        progress.update(f"{n} of 500 replayed")
    progress.update("500 of 500 replayed", final=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "kaleido dlq replay: 1 of 500 replayed",
        "kaleido dlq replay: 500 of 500 replayed",
    ]


def test_a_port_shared_by_left_behind_workers_is_free_for_workers() -> None:
    # The workers of a supervisor killed a moment ago still hold their SO_REUSEPORT sockets; a
    # restarted `--workers 2` binds beside them as they did, so the check must not refuse it.
    with socket.socket() as worker:
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", 0))
        worker.listen()
        port = worker.getsockname()[1]
        check_listen_addresses(Settings(http_port=port, ops_port=0, workers=2))
        with pytest.raises(ConfigError, match="in use"):  # one process binds without it
            check_listen_addresses(Settings(http_port=port, ops_port=0))
    with socket.socket() as other:  # a program that shares nothing still blocks the workers
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ConfigError, match="in use"):
            check_listen_addresses(Settings(http_port=port, ops_port=0, workers=2))


def test_a_busy_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(http_port=port, ops_port=0)
        with pytest.raises(ConfigError, match=r"^KALEIDO_HTTP_BIND \(--http-bind\): .* in use"):
            check_listen_addresses(settings)
        ops = Settings(http_port=0, ops_port=port)
        with pytest.raises(ConfigError, match=r"^KALEIDO_OPS_BIND \(--ops-bind\)"):
            check_listen_addresses(ops)
        # The whole command: one line, exit 2, nothing started (no server has these URLs).
        started = run(
            str(REPO / "run.py"),
            KALEIDO_REDIS_URL="redis://127.0.0.1:1/0",
            KALEIDO_DATABASE_URL="postgresql://kaleido@127.0.0.1:1/kaleido",
            KALEIDO_HTTP_BIND=f"127.0.0.1:{port}",
            KALEIDO_STATE_DIR=str(tmp_path),
        )
    assert started.returncode == 2, started.stderr
    assert started.stderr.splitlines() == [
        f"kaleido: configuration error: KALEIDO_HTTP_BIND (--http-bind): the public listener's "
        f"127.0.0.1:{port} is in use (another Kaleido, or a second `make run`?); set "
        "KALEIDO_HTTP_BIND to a free HOST:PORT"
    ]


def test_dev_with_urls_set_is_one_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    started = run(
        str(REPO / "run.py"),
        "--dev",
        KALEIDO_REDIS_URL="redis://127.0.0.1:1/0",
        KALEIDO_DATABASE_URL="postgresql://kaleido@127.0.0.1:1/kaleido",
        KALEIDO_STATE_DIR=str(state),
    )
    assert started.returncode == 2
    (line,) = started.stderr.splitlines()
    assert "--dev starts private servers, but KALEIDO_REDIS_URL and KALEIDO_DATABASE_URL" in line
    assert not state.exists()  # nothing was started or written


@pytest.mark.parametrize(
    "command",
    [["sync"], ["streams"], ["dlq", "list", "ml-insights-results"], ["token", "--user-id", "1"],
     ["redis-acl"], ["top"]],
)  # fmt: skip
def test_a_secret_flag_a_command_does_not_read_is_refused_without_echo(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    secret = "hunter2-" + "x" * 32
    assert main([*command, "--service-token", secret]) == 2
    err = capsys.readouterr().err
    assert secret not in err and "--service-token: a secret is not accepted as a flag" in err
