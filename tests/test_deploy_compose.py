"""deploy/compose.yaml is a valid Compose file (the Compose specification's JSON schema, vendored
as tests/data/compose-spec.json from the docker-compose 1.29.2 wheel on PyPI, Apache-2.0), and
what the schema cannot see holds too: every file it names exists or is made by
deploy/compose/make-secrets.sh, start order waits only on health checks that exist, Kaleido
takes every secret from a file and its settings load, and the pieces work as the stack runs
them: Redis with the compose command line and the made ACL file (on this machine), the
PostgreSQL role of the ML search sync, Grafana's dashboard rewrite."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from kaleido.devstack import DevStack
from kaleido.http.auth import check_exposure
from kaleido.keys import KeyLayout
from kaleido.redis_acl import acl_rule
from kaleido.settings import load_settings

from .conftest import REPO
from .processes import free_port

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
MAKE_SECRETS = DEPLOY / "compose" / "make-secrets.sh"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
SECRETS_DIR = "/run/secrets/"
# Compose's durations: Go's, e.g. 1m30s, 10s, 500ms.
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$")


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(SCHEMA.read_text())
    # The file names its draft as `http://json-schema.org/draft/2019-09/schema#`, a spelling
    # jsonschema does not recognise: the draft it means, explicitly.
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def redis_version() -> str:
    """The ACL rule's Redis version for this machine's redis-server (the stack runs 7.2)."""
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    found = re.search(r"v=(\d+)\.(\d+)", version.stdout)
    assert found, version.stdout
    return "7.2" if (int(found[1]), int(found[2])) >= (7, 2) else "7.0"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files make-secrets.sh makes, in a folder of the test's own."""
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    kaleido = str(REPO / ".venv" / "bin" / "kaleido")
    done = subprocess.run(
        ["bash", str(MAKE_SECRETS), str(folder)],
        env={"PATH": "/usr/bin:/bin", "KALEIDO": kaleido, "REDIS_VERSION": redis_version()},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return folder


def read(folder: Path, name: str) -> str:
    return (folder / name).read_text().strip()


def test_the_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    errors = [error.message for error in validator().iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_breach(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["kaleido"]["healthchek"] = broken["services"]["kaleido"].pop("healthcheck")
    broken["services"]["redis"]["depends_on"] = {"postgres": {"condition": "service_ready"}}
    assert len(list(validator().iter_errors(broken))) == 2


def durations(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("interval", "timeout", "start_period", "stop_grace_period"):
                yield value
            else:
                yield from durations(value)
    elif isinstance(node, list):
        for item in node:
            yield from durations(item)


def test_every_duration_is_one_compose_reads(compose: dict[str, Any]) -> None:
    found = list(durations(compose["services"]))
    assert len(found) > 10
    assert [d for d in found if not DURATION.match(d)] == []


def test_start_order_waits_only_on_health_checks_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service or "profiles" in service, name
        for needed, how in (service.get("depends_on") or {}).items():
            assert how["condition"] == "service_healthy", (name, needed)
            assert "healthcheck" in services[needed], (name, needed)
            # A service outside every profile never waits on one inside a profile.
            assert "profiles" not in services[needed] or "profiles" in service, (name, needed)
    assert set(services["kaleido"]["depends_on"]) == {"redis", "postgres"}


def test_every_file_it_names_exists_or_is_made_by_make_secrets(
    compose: dict[str, Any], secrets: Path
) -> None:
    for name, config in compose["configs"].items():
        assert (DEPLOY / config["file"]).is_file(), name
    made = {path.name for path in secrets.iterdir()}
    for name, secret in compose["secrets"].items():
        path = Path(secret["file"])
        assert path.parent == Path("compose/secrets"), name
        assert path.name in made, name
    for name, service in compose["services"].items():
        for env_file in [service["env_file"]] if "env_file" in service else []:
            assert Path(env_file).parent == Path("compose/secrets") and Path(env_file).name in made
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], (name, volume)
    assert (DEPLOY / "compose" / ".gitignore").read_text().splitlines()[-1] == "secrets/"


def kaleido_environment(compose: dict[str, Any], secrets: Path) -> dict[str, str]:
    """Kaleido's environment in the stack, each KALEIDO_X_FILE read into KALEIDO_X as Kaleido
    reads it, plus what the image sets."""
    service = compose["services"]["kaleido"]
    env = {"KALEIDO_HTTP_BIND": "0.0.0.0:8080", "KALEIDO_OPS_BIND": "0.0.0.0:9090"}
    for name, value in service["environment"].items():
        if name.endswith("_FILE"):
            assert value.startswith(SECRETS_DIR), name
            secret = value.removeprefix(SECRETS_DIR)
            assert secret in service["secrets"], name
            env[name.removesuffix("_FILE")] = read(secrets, secret)
        else:
            env[name] = value
    return env


def test_kaleido_takes_every_secret_from_a_file_and_its_settings_load(
    compose: dict[str, Any], secrets: Path
) -> None:
    env = kaleido_environment(compose, secrets)
    file_settings = {n for n in compose["services"]["kaleido"]["environment"] if "_FILE" in n}
    assert file_settings == {
        "KALEIDO_REDIS_URL_FILE",
        "KALEIDO_DATABASE_URL_FILE",
        "KALEIDO_JWT_SECRET_FILE",
        "KALEIDO_SERVICE_TOKEN_FILE",
        "KALEIDO_ADMIN_TOKEN_FILE",
    }
    settings = load_settings(env)
    assert settings.workers == 2
    assert settings.key_prefix == ""  # the ML service's bare stream names
    assert settings.shutdown_deadline < 20  # stop_grace_period: 20s
    assert settings.redis_url and urlsplit(settings.redis_url).hostname == "redis"
    assert settings.database_url and urlsplit(settings.database_url).hostname == "postgres"
    check_exposure(settings)  # the public port is open to the network: auth is configured
    for secret in ("admin_token", "jwt_secret", "service_token"):
        assert getattr(settings, secret), secret


def test_make_secrets_builds_consistent_files_and_keeps_them(secrets: Path) -> None:
    database = urlsplit(read(secrets, "kaleido_database_url"))
    assert database.password == read(secrets, "postgres_password")
    assert (database.username, database.path) == ("kaleido", "/kaleido")
    redis = urlsplit(read(secrets, "kaleido_redis_url"))
    assert redis.password == read(secrets, "redis_kaleido_password")
    acl = read(secrets, "redis_users.acl").splitlines()
    assert acl[0] == "user default on nopass resetchannels -@all +ping"
    major, minor = (int(part) for part in redis_version().split("."))
    assert acl[1] == acl_rule("kaleido", redis.password, KeyLayout(""), (major, minor))
    assert acl[2].startswith("user ml on #")
    ml = dict(line.split("=", 1) for line in read(secrets, "ml.env").splitlines())
    assert urlsplit(ml["REDIS_URL"]).password == read(secrets, "redis_ml_password")
    assert ml["DB_PASSWORD"] == read(secrets, "postgres_ml_password")
    assert {p.stat().st_mode & 0o777 for p in secrets.iterdir()} == {0o644}
    assert secrets.stat().st_mode & 0o777 == 0o700
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    again = subprocess.run(
        ["bash", str(MAKE_SECRETS), str(secrets)], capture_output=True, text=True, check=True
    )
    assert again.stdout == ""
    assert {p.name: p.read_text() for p in secrets.iterdir()} == before


def redis_argv(compose: dict[str, Any], secrets: Path, data: Path, port: int) -> list[str]:
    """The compose command line of Redis with its paths on this machine, on loopback."""
    argv: list[str] = compose["services"]["redis"]["command"]
    paths = {
        "/usr/local/etc/redis/redis.conf": str(REPO / "redis.conf"),
        "/data": str(data),
        "0.0.0.0": "127.0.0.1",
    }
    mapped = [paths.get(a, a.replace(SECRETS_DIR, f"{secrets}/")) for a in argv]
    return [*mapped, "--port", str(port), "--daemonize", "no"]


def redis_cli(port: int, *args: str, user: str | None = None, password: str = "") -> str:
    auth = ["--user", user, "--pass", password, "--no-auth-warning"] if user else []
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *auth, *args], capture_output=True, text=True, timeout=10
    )
    return done.stdout.strip()


@pytest.fixture
def compose_redis(compose: dict[str, Any], secrets: Path, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        redis_argv(compose, secrets, tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        healthcheck = compose["services"]["redis"]["healthcheck"]["test"][1]
        with_port = healthcheck.replace("redis-cli", f"redis-cli -p {port}")
        deadline = time.monotonic() + 20
        while subprocess.run(["sh", "-c", with_port], capture_output=True).returncode != 0:
            assert proc.poll() is None, "redis-server exited: see its arguments"
            assert time.monotonic() < deadline, "the compose health check never passed"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_runs_with_the_compose_command_line_and_the_made_acl_file(
    compose_redis: int, secrets: Path, tmp_path: Path
) -> None:
    port = compose_redis
    assert redis_cli(port, "ping") == "PONG"  # the health check, with no password
    assert "NOPERM" in redis_cli(port, "get", "x")
    kaleido = {"user": "kaleido", "password": read(secrets, "redis_kaleido_password")}
    # No CONFIG for Kaleido's user (it would read the admin's password): INFO says it.
    assert "NOPERM" in redis_cli(port, "config", "get", "appendonly", **kaleido)
    assert "aof_enabled:1" in redis_cli(port, "info", "persistence", **kaleido)
    assert redis_cli(port, "xlen", "ml-insights-results", **kaleido) == "0"
    assert "NOPERM" in redis_cli(port, "flushall", **kaleido)
    ml = {"user": "ml", "password": read(secrets, "redis_ml_password")}
    assert redis_cli(port, "xadd", "ml-insights-results", "*", "mediaId", "1", **ml) != ""
    assert "NOPERM" in redis_cli(port, "config", "set", "maxmemory", "1", **ml)


def test_the_ml_search_role_reads_kaleido_tables_and_writes_nothing(
    stack: DevStack, tmp_path: Path
) -> None:
    password_file = tmp_path / "postgres_ml_password"
    password_file.write_text("ml-search-test-password\n")
    url = urlsplit(stack.database_url)
    owner, database = url.username or "postgres", url.path.lstrip("/")
    env = {
        "PATH": "/usr/bin:/bin",
        "PGPASSWORD": url.password or "",  # the owner's (the test servers take passwords)
        "PGHOST": url.hostname or "",
        "PGPORT": str(url.port),
        "POSTGRES_USER": owner,
        "POSTGRES_DB": database,
        "POSTGRES_ML_PASSWORD_FILE": str(password_file),
    }
    psql = ["psql", "-h", env["PGHOST"], "-p", env["PGPORT"], "-v", "ON_ERROR_STOP=1", "-Atq"]
    init = DEPLOY / "compose" / "postgres-init.sh"
    try:
        subprocess.run(["bash", str(init)], env=env, check=True, capture_output=True)
        as_owner = [*psql, "-U", owner, "-d", database, "-c"]
        subprocess.run([*as_owner, "CREATE TABLE ml_search_probe (id int)"], env=env, check=True)
        subprocess.run([*as_owner, "INSERT INTO ml_search_probe VALUES (7)"], env=env, check=True)
        as_ml = {**env, "PGPASSWORD": "ml-search-test-password"}
        ml = [*psql, "-U", "ml_search", "-d", database, "-c"]
        read_back = subprocess.run(
            [*ml, "SELECT id FROM ml_search_probe"], env=as_ml, capture_output=True, text=True
        )
        assert read_back.stdout.strip() == "7", read_back.stderr
        posts = subprocess.run([*ml, "SELECT count(*) FROM posts"], env=as_ml, capture_output=True)
        assert posts.returncode == 0, posts.stderr  # a table that existed before the role
        write = subprocess.run(
            [*ml, "DELETE FROM ml_search_probe"], env=as_ml, capture_output=True, text=True
        )
        assert "permission denied" in write.stderr
    finally:
        cleanup = (
            "DROP TABLE IF EXISTS ml_search_probe; DROP OWNED BY ml_search; DROP ROLE ml_search"
        )
        subprocess.run(
            [*psql, "-U", owner, "-d", database, "-c", cleanup], env=env, capture_output=True
        )


def test_grafana_gets_the_dashboard_with_the_provisioned_data_source(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The grafana service's start command, run here with its paths in a folder of the test's
    own, gives a dashboard whose every data source is the provisioned Prometheus."""
    script = compose["services"]["grafana"]["entrypoint"][2].replace("$$", "$")
    script = script.replace("/var/lib/grafana", str(tmp_path)).replace(
        "/etc/kaleido/kaleido.json", str(DEPLOY / "grafana" / "kaleido.json")
    )
    assert script.endswith("exec /run.sh")
    subprocess.run(["sh", "-c", script.removesuffix("exec /run.sh") + "true"], check=True)
    dashboard = (tmp_path / "dashboards" / "kaleido.json").read_text()
    provisioned = yaml.safe_load((DEPLOY / "compose" / "grafana" / "datasources.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    assert "${DS_PROMETHEUS}" not in dashboard
    assert set(data_source_uids(json.loads(dashboard))) == {uid}


def data_source_uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield value["uid"]
            else:
                yield from data_source_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from data_source_uids(item)


def test_the_ml_profile_shares_redis_and_kaleido_postgres(compose: dict[str, Any]) -> None:
    ml = {name: s for name, s in compose["services"].items() if "profiles" in s}
    assert all(s["profiles"] == ["ml"] for s in ml.values())
    workers = {name for name, s in ml.items() if "env_file" in s}
    assert {"post_aggregator", "profile_enrollment", "es_sync", "face_matcher"} <= workers
    for name in workers:
        image = ml[name]["image"]
        assert image.endswith(f"/kaleidoscope-{name}:${{KALEIDOSCOPE_ML_TAG:-latest}}"), name
        assert "redis" in ml[name]["depends_on"], name
    assert {"postgres", "elasticsearch"} <= set(ml["es_sync"]["depends_on"])
