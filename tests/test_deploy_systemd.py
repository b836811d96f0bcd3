"""deploy/systemd/kaleido.service passes `systemd-analyze verify` (in a root folder of the test's
own holding the unit, the command it starts and this machine's system units), scores as "OK"
in `systemd-analyze security`, hands every secret over as a credential read through the same
KALEIDO_*_FILE variables as deploy/compose.yaml, and its example settings load."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from kaleido.http.auth import check_exposure
from kaleido.settings import load_settings

from .conftest import REPO
from .tools import require_tool

SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "kaleido.service"
# systemd-analyze security's scale: 0 (locked down) to 10 (exposed); below 2 is "OK".
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "`make bootstrap-test` installs Debian's systemd")


def unit_lines(text: str) -> list[tuple[str, str]]:
    """(key, value) of every setting line of a unit file."""
    pairs = []
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            pairs.append((key, value))
    return pairs


def verify(unit_text: str, root: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of `unit_text` in `root`: the unit, an executable at its
    ExecStart path, and this machine's system units (the targets it names)."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "kaleido.service").write_text(unit_text)
    command = dict(unit_lines(unit_text))["ExecStart"].split()[0]
    executable = root / command.lstrip("/")
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    shipped = root / "usr" / "lib" / "systemd" / "system"
    if not shipped.exists():
        shutil.copytree(Path("/usr/lib/systemd/system"), shipped, symlinks=True)
    return subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", str(units / "kaleido.service")],
        capture_output=True,
        text=True,
    )


def test_the_unit_verifies(tmp_path: Path) -> None:
    done = verify(UNIT.read_text(), tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_check_catches_a_breach(tmp_path: Path) -> None:
    """verify exits 0 on a value it ignores: the test reads its warnings too."""
    broken = UNIT.read_text().replace("KillMode=mixed", "KillMode=mixd")
    done = verify(broken, tmp_path)
    assert "kill mode" in done.stderr


def test_the_unit_is_hardened() -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for kaleido.service: ([0-9.]+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found[1]) < MAX_EXPOSURE, done.stdout
    settings = dict(unit_lines(UNIT.read_text()))
    assert settings["User"] == "kaleido" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["PrivateTmp"] == "yes"
    sysusers = (SYSTEMD / "kaleido.sysusers").read_text().splitlines()[-1].split()
    assert sysusers[:2] == ["u", "kaleido"]


def test_every_secret_is_a_credential_read_through_its_file_variable() -> None:
    pairs = unit_lines(UNIT.read_text())
    credentials = dict(value.split(":", 1) for key, value in pairs if key == "LoadCredential")
    files = dict(
        value.split("=", 1)
        for key, value in pairs
        if key == "Environment" and value.split("=", 1)[0].endswith("_FILE")
    )
    assert {path.removeprefix("%d/") for path in files.values()} == set(credentials)
    assert all(path.startswith("/etc/kaleido/credentials/") for path in credentials.values())
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    compose_files = {n for n in compose["services"]["kaleido"]["environment"] if "_FILE" in n}
    assert set(files) == compose_files


def test_the_example_settings_load_with_the_secrets() -> None:
    env = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "kaleido.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    env |= {
        "KALEIDO_REDIS_URL": "redis://kaleido:secret@127.0.0.1:6379/0",
        "KALEIDO_DATABASE_URL": "postgresql://kaleido:secret@127.0.0.1:5432/kaleido",
        "KALEIDO_SERVICE_TOKEN": "s" * 32,
    }
    settings = load_settings(env)
    check_exposure(settings)
    assert settings.shutdown_deadline < 20  # TimeoutStopSec=20s
