"""Secrets come from the environment or a file, never a flag; a bad file is one clear line."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kaleido.errors import ConfigError
from kaleido.secret_settings import read_secret, url_has_secret
from kaleido.settings import load_settings, settings_from_argv, settings_to_env

JWT = base64.b64encode(b"k" * 32).decode()
TOKEN = "admin-token-0123456789"


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "KALEIDO_JWT_SECRET_FILE": secret_file(tmp_path, JWT + "\n", "jwt"),
            "KALEIDO_ADMIN_TOKEN_FILE": secret_file(tmp_path, TOKEN + "\r\n", "admin"),
            "KALEIDO_SERVICE_TOKEN_FILE": secret_file(tmp_path, "s" * 40, "service"),
            "KALEIDO_REDIS_URL_FILE": secret_file(tmp_path, "redis://k:pw@h:1/0\n", "redis"),
            "KALEIDO_DATABASE_URL_FILE": secret_file(tmp_path, "postgresql://u:pw@h/d\n", "db"),
        }
    )
    assert settings.jwt_secret == JWT and settings.admin_token == TOKEN
    assert settings.service_token == "s" * 40
    assert settings.redis_url == "redis://k:pw@h:1/0"
    assert settings.database_url == "postgresql://u:pw@h/d"


def test_a_file_named_by_a_flag_is_read_too(tmp_path: Path) -> None:
    path = secret_file(tmp_path, TOKEN + "\n")
    settings = settings_from_argv(["--admin-token-file", path], {})
    assert settings.admin_token == TOKEN


def test_the_value_in_a_file_is_validated_naming_the_file_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^KALEIDO_ADMIN_TOKEN_FILE: the admin token must be"):
        load_settings({"KALEIDO_ADMIN_TOKEN_FILE": secret_file(tmp_path, "short\n")})


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda tmp: str(tmp / "missing"), "cannot read {tmp}/missing: No such file or directory"),
        (lambda tmp: str(tmp), "cannot read {tmp}: Is a directory"),
        (lambda tmp: secret_file(tmp, ""), "{tmp}/secret is empty"),
        (lambda tmp: secret_file(tmp, "\n\n"), "{tmp}/secret is empty"),
    ],
)
def test_an_unreadable_or_empty_file_is_one_clear_line(
    tmp_path: Path, setup: object, message: str
) -> None:
    path = setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        load_settings({"KALEIDO_JWT_SECRET_FILE": path})
    assert str(caught.value) == "KALEIDO_JWT_SECRET_FILE: " + message.format(tmp=tmp_path)


def test_the_variable_and_its_file_together_are_refused(tmp_path: Path) -> None:
    environ = {
        "KALEIDO_ADMIN_TOKEN": TOKEN,
        "KALEIDO_ADMIN_TOKEN_FILE": secret_file(tmp_path, TOKEN),
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert str(caught.value) == (
        "KALEIDO_ADMIN_TOKEN_FILE: KALEIDO_ADMIN_TOKEN is set too; set only one of them"
    )


@pytest.mark.parametrize(
    ("flags", "variable"),
    [
        (["--jwt-secret", JWT], "KALEIDO_JWT_SECRET"),
        (["--admin-token", TOKEN], "KALEIDO_ADMIN_TOKEN"),
        (["--service-token", "s" * 40], "KALEIDO_SERVICE_TOKEN"),
        (["--redis-url", "redis://:hunter2@cache:6379/0"], "KALEIDO_REDIS_URL"),
        (["--redis-url", "redis+cluster://k:hunter2@a:1,b:2"], "KALEIDO_REDIS_URL"),
        (["--database-url", "postgresql://app:hunter2@db/k"], "KALEIDO_DATABASE_URL"),
        (["--database-url", "postgresql://db/k?password=hunter2"], "KALEIDO_DATABASE_URL"),
    ],
)
def test_a_secret_as_a_flag_is_refused_naming_the_variable(flags: list[str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_argv(flags, {})
    message = str(caught.value)
    assert message.startswith(f"{flags[0]}: ") and "not accepted as a flag" in message
    assert message.endswith(f"set {variable} or {variable}_FILE")
    assert flags[1] not in message and "hunter2" not in message


def test_a_url_without_a_password_stays_a_flag() -> None:
    settings = settings_from_argv(
        ["--redis-url", "redis://cache:6379/0", "--database-url", "postgresql://app@db/k"], {}
    )
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.database_url == "postgresql://app@db/k"


def test_which_urls_carry_a_secret() -> None:
    assert url_has_secret("redis://:pw@h/0") and url_has_secret("rediss://u:pw@h/0")
    assert url_has_secret("postgresql://h/d?sslpassword=x")
    assert url_has_secret("redis+cluster://u:pw@a:1,b:2")
    assert not url_has_secret("redis://user@h/0") and not url_has_secret("redis+cluster://a:1")


def test_a_secret_that_is_no_setting_is_read_the_same_way(tmp_path: Path) -> None:
    variable = "KALEIDO_REDIS_ADMIN_URL"
    assert read_secret({}, variable) is None
    assert read_secret({variable: "redis://a"}, variable) == "redis://a"
    path = secret_file(tmp_path, "redis://b\n")
    assert read_secret({variable + "_FILE": path}, variable) == "redis://b"


def test_workers_receive_secrets_through_their_environment(tmp_path: Path) -> None:
    settings = load_settings({"KALEIDO_JWT_SECRET_FILE": secret_file(tmp_path, JWT + "\n")})
    assert load_settings(settings_to_env(settings)) == settings
