"""Settings: each bad value stops start-up with one clear line naming the variable."""

from __future__ import annotations

import re
import subprocess
import sys

import attrs
import pytest

from kaleido.errors import ConfigError
from kaleido.redis_url import parse_cluster_url
from kaleido.secret_settings import SECRET_URLS, SECRETS, redact_url
from kaleido.settings import (
    OPTIONS,
    Settings,
    load_settings,
    settings_from_argv,
    settings_to_env,
)

from .conftest import REPO


def test_defaults_match_the_contract() -> None:
    s = load_settings({})
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.sync_interval == 300 and s.sync_lock_ttl == 30
    assert s.view_dedup_ttl == 86400
    assert s.stream_maxlen == 10000
    assert s.max_deliveries == 5
    assert s.key_prefix == "" and s.instance == ""
    assert s.log_format == "json"
    assert s.embedded


def test_environment_values_are_parsed() -> None:
    s = load_settings(
        {
            "KALEIDO_REDIS_URL": "rediss://:secret@cache.example:6380/2",
            "KALEIDO_DATABASE_URL": "postgresql://app:pw@db:5432/kaleido",
            "KALEIDO_HTTP_BIND": "0.0.0.0:9000",
            "KALEIDO_SYNC_INTERVAL": "2.5",
            "KALEIDO_SYNC_LOCK_TTL": "4",
            "KALEIDO_VIEW_DEDUP_TTL": "60",
            "KALEIDO_STREAM_MAXLEN": "500",
            "KALEIDO_MAX_DELIVERIES": "3",
            "KALEIDO_KEY_PREFIX": "staging:",
            "KALEIDO_INSTANCE": "worker2",
            "KALEIDO_LOG_FORMAT": "console",
            "KALEIDO_ADMIN_TOKEN": "0123456789abcdef0123",
        }
    )
    assert s.http_host == "0.0.0.0" and s.http_port == 9000
    assert s.sync_interval == 2.5 and s.sync_lock_ttl == 4 and s.view_dedup_ttl == 60
    assert s.stream_maxlen == 500 and s.max_deliveries == 3
    assert s.key_prefix == "staging:" and s.instance == "worker2"
    assert not s.embedded


def test_flags_override_environment() -> None:
    s = settings_from_argv(["--sync-interval", "7"], {"KALEIDO_SYNC_INTERVAL": "9"})
    assert s.sync_interval == 7


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KALEIDO_REDIS_URL", "http://localhost", "KALEIDO_REDIS_URL: expected a redis://"),
        ("KALEIDO_REDIS_URL", "redis://", "KALEIDO_REDIS_URL: the URL has no host"),
        ("KALEIDO_REDIS_URL", "redis://h:99999", "KALEIDO_REDIS_URL: the URL has an invalid port"),
        ("KALEIDO_DATABASE_URL", "mysql://db/x", "KALEIDO_DATABASE_URL: expected a postgresql://"),
        ("KALEIDO_HTTP_BIND", "8080", "KALEIDO_HTTP_BIND: expected HOST:PORT"),
        ("KALEIDO_HTTP_BIND", "h:70000", "KALEIDO_HTTP_BIND: expected a port"),
        ("KALEIDO_SYNC_INTERVAL", "soon", "KALEIDO_SYNC_INTERVAL: expected a number"),
        ("KALEIDO_SYNC_INTERVAL", "-1", "KALEIDO_SYNC_INTERVAL: expected a positive number"),
        ("KALEIDO_SYNC_INTERVAL", "nan", "KALEIDO_SYNC_INTERVAL: expected a positive number"),
        ("KALEIDO_SYNC_LOCK_TTL", "0.5", "KALEIDO_SYNC_LOCK_TTL: expected at least 1 second"),
        ("KALEIDO_VIEW_DEDUP_TTL", "1.5", "KALEIDO_VIEW_DEDUP_TTL: expected a positive whole"),
        ("KALEIDO_STREAM_MAXLEN", "0", "KALEIDO_STREAM_MAXLEN: expected a positive whole"),
        ("KALEIDO_MAX_DELIVERIES", "five", "KALEIDO_MAX_DELIVERIES: expected a positive whole"),
        ("KALEIDO_KEY_PREFIX", "a b", "KALEIDO_KEY_PREFIX: expected up to 64 characters"),
        ("KALEIDO_INSTANCE", "w/2", "KALEIDO_INSTANCE: expected up to 64 characters"),
        ("KALEIDO_LOG_FORMAT", "xml", "KALEIDO_LOG_FORMAT: expected one of json, console"),
        ("KALEIDO_ADMIN_TOKEN", "short", "KALEIDO_ADMIN_TOKEN: the admin token must be"),
        ("KALEIDO_SHUTDOWN_DEADLINE", "0", "KALEIDO_SHUTDOWN_DEADLINE: expected a positive"),
        (
            "KALEIDO_REDIS_URL",
            "redis+cluster://h1:7000,h2",
            "KALEIDO_REDIS_URL: expected HOST:PORT",
        ),
        ("KALEIDO_REDIS_URL", "redis+cluster://h:0", "KALEIDO_REDIS_URL: expected a port"),
        ("KALEIDO_VIEW_PARTITIONS", "48", "KALEIDO_VIEW_PARTITIONS: expected a power of two"),
        ("KALEIDO_VIEW_PARTITIONS", "2048", "KALEIDO_VIEW_PARTITIONS: expected a power of two"),
    ],
)
def test_each_bad_value_names_its_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value})
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_passwords_never_appear_in_errors_or_repr() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"KALEIDO_REDIS_URL": "http://user:hunter2@host"})
    assert "hunter2" not in str(info.value)
    s = Settings(redis_url="redis://:hunter2@h:1/0", admin_token="tok-hunter2-0123456789")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.public_dict())
    assert redact_url("postgresql://u:pw@db:5/k") == "postgresql://u:***@db:5/k"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h/0?password=hunter2", "redis://h/0?password=***"),
        ("redis://h/0?db=1&Password=hunter2", "redis://h/0?db=1&Password=***"),
        (
            "postgresql://db/k?sslmode=require&sslpassword=hunter2",
            "postgresql://db/k?sslmode=require&sslpassword=***",
        ),
        ("postgresql://db/k?sslmode=verify-full", "postgresql://db/k?sslmode=verify-full"),
    ],
)
def test_passwords_in_the_query_are_redacted_too(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    settings = Settings(redis_url=url) if url.startswith("redis") else Settings(database_url=url)
    assert "hunter2" not in repr(settings) + str(settings.public_dict())


def test_a_cluster_url_names_its_seed_nodes_and_hides_its_password() -> None:
    url = "rediss+cluster://app:s3cret@10.0.0.1:7000,[::1]:7001/"
    assert load_settings({"KALEIDO_REDIS_URL": url}).redis_url == url
    parsed = parse_cluster_url(url)
    assert parsed.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (parsed.username, parsed.password, parsed.tls) == ("app", "s3cret", True)
    assert redact_url(url) == "rediss+cluster://app:***@10.0.0.1:7000,[::1]:7001/"
    assert "s3cret" not in repr(parsed)
    with_ca = parse_cluster_url("rediss+cluster://h:7000/?ssl_ca_certs=/etc/ca.pem")
    assert with_ca.ca_certs == "/etc/ca.pem"
    with pytest.raises(ConfigError, match="unknown query parameter 'ssl_certreqs'"):
        load_settings({"KALEIDO_REDIS_URL": "redis+cluster://h:7000/?ssl_certreqs=none"})


def test_bad_value_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--max-deliveries", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KALEIDO_DATABASE_URL": "postgresql://u:pw@x/y"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "kaleido: configuration error: --max-deliveries: expected a positive whole number, got 0"
    ]


def test_the_configuration_page_is_generated_from_the_declaration_and_current() -> None:
    """docs/configuration.md's table is `scripts/settings_docs.py`'s output: one row per
    setting, nothing stale (rerun the script after changing a setting)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout
    page = (REPO / "docs" / "configuration.md").read_text("utf-8")
    table = page.split("<!-- settings:start -->", 1)[1].split("<!-- settings:end -->", 1)[0]
    listed = re.findall(r"^\| `(KALEIDO_[A-Z0-9_]+)` \|", table, re.MULTILINE)
    assert listed == [f"KALEIDO_{name.upper()}" for name in OPTIONS]


def test_every_field_is_set_by_one_setting_named_as_its_variable() -> None:
    """The declaration on the fields is the whole of it: each field is set by exactly one
    option, whose variable and flag spell the option's name."""
    set_fields = [field for option in OPTIONS.values() for field in option.fields]
    assert sorted(set_fields) == sorted(attrs.fields_dict(Settings))
    assert OPTIONS["http_bind"].fields == ("http_host", "http_port")
    for name, option in OPTIONS.items():
        assert option.env == "KALEIDO_" + name.upper()
        assert option.flag == "--" + name.replace("_", "-")
    assert set(SECRETS) | set(SECRET_URLS) <= set(OPTIONS)  # the secrets' rules name settings


def test_every_setting_goes_through_the_environment_and_back() -> None:
    settings = Settings(
        redis_url="redis+cluster://a:7000,b:7001",
        database_url="postgresql://app@db/k",
        http_host="::1",
        http_port=0,
        ops_host="0.0.0.0",
        ops_port=9999,
        admin_token="a" * 16,
        service_token="s" * 32,
        auth="off",
        image_embedding_dim=512,
        face_embedding_dim=128,
        media_url_prefixes=("https://cdn.example.com/media/", "https://img.example.org/"),
        sync_interval=2.5,
        sync_lock_ttl=3.0,
        view_dedup_ttl=60,
        view_partitions=8,
        stream_maxlen=100,
        max_deliveries=2,
        key_prefix="{staging}:",
        instance="w2",
        log_format="console",
        shutdown_deadline=1.5,
        metrics_interval=0.5,
        workers=3,
        max_connections=10,
        max_connections_per_client=2,
        http2="on",
        trusted_proxies=("10.0.0.0/8", "::1/128"),
        redis_scripts="eval",
    )
    env = settings_to_env(settings)
    assert env["KALEIDO_HTTP_BIND"] == "[::1]:0"
    assert (
        env["KALEIDO_MEDIA_URL_PREFIXES"]
        == "https://cdn.example.com/media/,https://img.example.org/"
    )
    assert load_settings(env) == settings
    assert load_settings(settings_to_env(Settings())) == Settings()


def test_image_and_face_embedding_sizes_are_two_settings() -> None:
    s = load_settings({})
    assert (s.image_embedding_dim, s.face_embedding_dim) == (1408, 1408)
    hf = load_settings({"KALEIDO_IMAGE_EMBEDDING_DIM": "512"})  # the HuggingFace platform
    assert (hf.image_embedding_dim, hf.face_embedding_dim) == (512, 1408)
    with pytest.raises(ConfigError) as caught:
        load_settings({"KALEIDO_EMBEDDING_DIM": "512"})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("KALEIDO_EMBEDDING_DIM is no longer read")
    assert "KALEIDO_IMAGE_EMBEDDING_DIM" in message and "KALEIDO_FACE_EMBEDDING_DIM" in message
