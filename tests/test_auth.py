"""Who may call what: the Kaleidoscope backend's JWTs, the service token and the admin token,
checked by `Authenticator` alone and then route by route on the running service."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
import trio
from structlog.testing import capture_logs

from kaleido.app import Running, serve
from kaleido.errors import ConfigError
from kaleido.gateways import Backends
from kaleido.http.auth import (
    ROLE_ADMIN,
    ROLE_MODERATOR,
    ROLE_USER,
    Authenticator,
    Caller,
    Forbidden,
    Unauthorized,
    check_exposure,
    mint_token,
)
from kaleido.settings import Settings, settings_from_argv

from .conftest import REPO
from .processes import kaleido_env
from .service_helpers import client, ops_client

KEY = b"kaleidoscope-test-key-of-32-bytes!!"
SECRET = base64.b64encode(KEY).decode()
SERVICE = "service-token-for-trusted-backends-0123"
ADMIN = "test-admin-token-0123456789"
OWNER, OTHER, MODERATOR, ADMIN_USER, SUGGESTED = 1, 2, 3, 4, 5


def token(user_id: int = OWNER, role: str = ROLE_USER, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": f"user{user_id}",
        "userId": user_id,
        "role": role,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, KEY, algorithm="HS256")


def unsigned(user_id: int = OWNER) -> str:
    """`alg: none`: a token anyone can write."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"userId": user_id, "role": ROLE_ADMIN, "exp": int(time.time()) + 600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def signed_with(algorithm: str) -> str:
    """A token signed with KEY under another algorithm (an algorithm-confusion attempt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for HS512
        claims = {"userId": 1, "role": ROLE_USER, "exp": int(time.time()) + 60}
        return jwt.encode(claims, KEY, algorithm=algorithm)


AUTH = Authenticator(KEY, SERVICE, ADMIN)


def bearer(value: str) -> str:
    return f"Bearer {value}"


# ---------------------------------------------------------------------------- the authenticator


def test_a_backend_token_is_a_user_with_its_id_and_role() -> None:
    assert AUTH.user_route(bearer(token(42, ROLE_MODERATOR))) == Caller("user", 42, ROLE_MODERATOR)
    assert AUTH.user_route(bearer(SERVICE)) == Caller("service")


def test_a_token_as_the_command_line_mints_it_is_accepted() -> None:
    settings = Settings(jwt_secret=SECRET)
    minted = mint_token(settings, 7, ROLE_ADMIN)
    assert AUTH.user_route(bearer(minted)) == Caller("user", 7, ROLE_ADMIN)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing 'Authorization: Bearer"),
        ("Basic dXNlcjpwdw==", "expected 'Authorization: Bearer"),
        ("Bearer ", "expected 'Authorization: Bearer"),
        ("Bearer not.a.jwt", "not valid"),
        (bearer(token(exp=int(time.time()) - 120)), "expired"),
        (
            bearer(
                jwt.encode(
                    {"userId": 1, "role": ROLE_USER, "exp": int(time.time()) + 60},
                    b"another-key-of-thirty-two-bytes!!!",
                    algorithm="HS256",
                )
            ),
            "signature",
        ),
        (bearer(unsigned()), "not valid"),
        (
            bearer(signed_with("HS512")),
            "not valid",
        ),
        (bearer(token(exp=None)), "exp"),
        (bearer(token(userId="1")), "userId"),
        (bearer(token(userId=True)), "userId"),
        (bearer(token(role="ROLE_ROOT")), "role"),
        (bearer(SERVICE + "x"), "not valid"),
    ],
)
def test_bad_credentials_are_401_with_a_challenge(header: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason) as caught:
        AUTH.user_route(header)
    assert caught.value.status == 401
    assert caught.value.headers and caught.value.headers["WWW-Authenticate"].startswith("Bearer ")


def test_clock_skew_within_a_minute_is_allowed() -> None:
    assert AUTH.user_route(bearer(token(exp=int(time.time()) - 30))).user_id == OWNER


def test_no_auth_configured_is_an_open_caller() -> None:
    assert Authenticator(None, None, ADMIN).user_route(None) == Caller("open")


def test_admin_routes_take_the_admin_token_or_an_admin_jwt() -> None:
    assert AUTH.admin_route(bearer(ADMIN)).kind == "admin"
    assert AUTH.admin_route(bearer(token(ADMIN_USER, ROLE_ADMIN))).user_id == ADMIN_USER
    for refused in (token(OWNER, ROLE_MODERATOR), SERVICE, "wrong-token"):
        with pytest.raises(Forbidden):
            AUTH.admin_route(bearer(refused))
    with pytest.raises(Unauthorized):
        AUTH.admin_route(None)
    with pytest.raises(Forbidden, match="disabled"):
        Authenticator(None, SERVICE, None).admin_route(bearer(SERVICE))


# ---------------------------------------------------------------------------- start-up rules


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--http-bind", "0.0.0.0:8080"], "KALEIDO_HTTP_BIND is 0.0.0.0:8080, not loopback"),
        (["--http-bind", "10.1.2.3:8080"], "set KALEIDO_JWT_SECRET"),
        (["--http-bind", "127.0.0.1:8080", "--auth", "off", "+service-token"], "contradicts"),
        (["--http-bind", "0.0.0.0:8080"], None),  # with a secret below
        (["--http-bind", "0.0.0.0:8080", "--auth", "off"], None),
        (["--http-bind", "[::1]:8080"], None),
        (["--http-bind", "localhost:8080"], None),
    ],
)
def test_user_routes_are_never_open_to_the_network_by_accident(
    flags: list[str], error: str | None
) -> None:
    # A secret is never a flag: "+service-token" puts the service token in the environment.
    environ = {"KALEIDO_SERVICE_TOKEN": SERVICE} if "+service-token" in flags else {}
    settings = settings_from_argv([f for f in flags if f != "+service-token"], environ)
    if error is None and settings.auth == "on" and settings.http_host == "0.0.0.0":
        settings = attrs.evolve(settings, jwt_secret=SECRET)
    if error is None:
        with capture_logs() as logs:
            check_exposure(settings)
        warned = [e for e in logs if e["event"] == "auth.off"]
        assert len(warned) == (settings.auth == "off")
        return
    with pytest.raises(ConfigError, match=error):
        check_exposure(settings)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KALEIDO_JWT_SECRET", "not base64!", "base64"),
        ("KALEIDO_JWT_SECRET", base64.b64encode(b"short").decode(), "at least 256"),
        ("KALEIDO_SERVICE_TOKEN", "short", "at least 32"),
        ("KALEIDO_AUTH", "maybe", "on, off"),
    ],
)
def test_bad_auth_settings_stop_start_up(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable}: .*{message}"):
        settings_from_argv([], {variable: value})


def test_a_non_loopback_bind_without_auth_exits_2_before_starting_anything(
    tmp_path: Path,
) -> None:
    env = kaleido_env(KALEIDO_HTTP_BIND="0.0.0.0:18089", KALEIDO_STATE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(REPO / "run.py")], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"not loopback, and no auth is configured: set KALEIDO_JWT_SECRET" in done.stderr
    assert not any(tmp_path.iterdir())  # no private server was started


def test_the_token_command_signs_as_the_backend_does() -> None:
    command = [sys.executable, str(REPO / "run.py"), "token", "--user-id", "42", "--role",
               ROLE_MODERATOR, "--ttl", "60"]  # fmt: skip
    done = subprocess.run(
        command, env=kaleido_env(KALEIDO_JWT_SECRET=SECRET), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), KEY, algorithms=["HS256"])
    assert (claims["userId"], claims["role"], claims["sub"]) == (42, ROLE_MODERATOR, "user42")
    assert claims["exp"] - claims["iat"] == 60
    unset = subprocess.run(command, env=kaleido_env(), capture_output=True, timeout=60)
    assert unset.returncode == 2 and b"set KALEIDO_JWT_SECRET" in unset.stderr


def test_secrets_never_reach_the_public_settings() -> None:
    settings = Settings(jwt_secret=SECRET, service_token=SERVICE, admin_token=ADMIN)
    shown = json.dumps(settings.public_dict()) + repr(settings)
    for secret in (SECRET, SERVICE, ADMIN):
        assert secret not in shown


# ---------------------------------------------------------------------------- the routes


@pytest.fixture
async def secured(settings: Settings, backends: Backends) -> AsyncIterator[Running]:
    settings = attrs.evolve(settings, jwt_secret=SECRET, service_token=SERVICE)
    await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (100, $1)", OWNER)
    await backends.postgres.execute(
        "INSERT INTO post_media (media_id, post_id, media_url, position) "
        "VALUES (1000, 100, 'https://cdn.example.com/a.jpg', 0)"
    )
    await backends.postgres.execute(
        "INSERT INTO media_detected_faces (media_id, face_uid, post_id, status, "
        "suggested_user_id, suggestion_confidence, matched_username) "
        "VALUES (1000, 'f1', 100, 'SUGGESTED', $1, 0.93, 'erin')",
        SUGGESTED,
    )
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        yield running
        running.stop()


# Each credential, as a header (None: no header).
CREDENTIALS: dict[str, str | None] = {
    "none": None,
    "expired": bearer(token(OWNER, exp=int(time.time()) - 3600)),
    "wrong signature": bearer(token(OWNER)[:-4] + "AAAA"),
    "alg none": bearer(unsigned(OWNER)),
    "other user": bearer(token(OTHER)),
    "owner": bearer(token(OWNER)),
    "moderator": bearer(token(MODERATOR, ROLE_MODERATOR)),
    "admin": bearer(token(ADMIN_USER, ROLE_ADMIN)),
    "service": bearer(SERVICE),
}
UNAUTHENTICATED = {"none": 401, "expired": 401, "wrong signature": 401, "alg none": 401}


def expect(**granted: int) -> dict[str, int]:
    """The status per credential: 401 for the four without a valid token, `granted` for those
    named, 403 for the rest."""
    out = dict(UNAUTHENTICATED)
    for name in CREDENTIALS:
        if name not in out:
            out[name] = granted.get(name.replace(" ", "_"), 403)
    return out


ok_for_all = {"other_user": 200, "owner": 200, "moderator": 200, "admin": 200, "service": 200}

ROUTES: list[tuple[str, str, Any, dict[str, int]]] = [
    # views for the post owner (user 1): only the owner's token or the service may name them
    ("POST", "/v1/views", [{"userId": OWNER, "postId": 100}], expect(owner=202, service=202)),
    ("POST", "/v1/posts", "new-post", expect(owner=201, service=201)),
    (
        "PUT",
        "/v1/posts/100/media",
        {"media": [{"mediaId": 1000, "mediaUrl": "https://cdn.example.com/a.jpg"}]},
        expect(owner=200, moderator=200, admin=200, service=200),
    ),
    (
        "POST",
        f"/v1/users/{OWNER}/profile-picture",
        {"imageUrl": "https://cdn.example.com/me.jpg"},
        expect(owner=202, service=202),
    ),
    ("GET", "/v1/posts/100", None, expect(**ok_for_all)),
    ("GET", "/v1/posts/100/views", None, expect(**ok_for_all)),
]


@pytest.mark.parametrize(("method", "path", "body", "statuses"), ROUTES)
async def test_each_route_answers_each_credential_as_the_table_says(
    secured: Running, method: str, path: str, body: Any, statuses: dict[str, int]
) -> None:
    answers = {}
    async with client(secured) as http:
        for index, (name, header) in enumerate(CREDENTIALS.items()):
            payload = body
            if body == "new-post":  # a new post per caller, owned by user 1
                payload = {
                    "postId": 200 + index,
                    "userId": OWNER,
                    "media": [
                        {"mediaId": 2000 + index, "mediaUrl": "https://cdn.example.com/n.jpg"}
                    ],
                }
            headers = {"Authorization": header} if header else {}
            r = await http.request(method, path, json=payload, headers=headers)
            answers[name] = r.status_code
            if r.status_code == 401:
                assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
            if r.status_code in (401, 403):
                assert r.json()["error"]
    assert answers == statuses


async def test_the_admin_route_answers_each_credential(secured: Running) -> None:
    answers = {}
    async with ops_client(secured) as http:
        for name, header in CREDENTIALS.items():
            headers = {"Authorization": header} if header else {}
            answers[name] = (await http.post("/v1/admin/sync", headers=headers)).status_code
    assert answers == {**expect(admin=200)}


async def test_face_suggestions_only_for_those_who_may_see_them(secured: Running) -> None:
    seen = {}
    viewers = {**CREDENTIALS, "suggested user": bearer(token(SUGGESTED))}
    async with client(secured) as http:
        for name, header in viewers.items():
            if name in UNAUTHENTICATED:
                continue
            r = await http.get("/v1/posts/100", headers={"Authorization": str(header)})
            [face] = r.json()["media"][0]["faces"]
            seen[name] = (face["suggestedUserId"], face["matchedUsername"])
    named, hidden = (SUGGESTED, "erin"), (None, None)
    assert seen == {
        "other user": hidden,
        "owner": named,
        "moderator": named,
        "admin": named,
        "service": named,
        "suggested user": named,
    }


async def test_views_count_once_per_authenticated_user(secured: Running) -> None:
    """A user token cannot pick its users: 10 000 items for itself on one post count 1."""
    headers = {"Authorization": bearer(token(OTHER))}
    async with client(secured) as http:
        r = await http.post("/v1/views", json=[{"postId": 100}] * 10_000, headers=headers)
        assert r.status_code == 202 and r.json() == {
            "accepted": 10_000,
            "counted": 1,
            "duplicates": 9_999,
        }
        many = [{"userId": u, "postId": 100} for u in range(1, 10_001)]
        refused = await http.post("/v1/views", json=many, headers=headers)
        assert refused.status_code == 403 and "body[0].userId" in refused.json()["error"]
        total = await http.get("/v1/posts/100/views", headers=headers)
    assert total.json()["views"] == 1
