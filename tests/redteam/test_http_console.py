"""Attacks on the ops console (findings 6, 7 and 12): guessing the admin token through the
sign-in form, a copied session cookie outliving its sign-out, a cookie sent in clear behind a
TLS-terminating proxy; and the attacks that held (CSRF, a foreign Origin, an open redirect)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from structlog.testing import capture_logs

from kaleido.app import Running, service_of
from kaleido.http.console.store import ATTEMPTS_PER_MINUTE
from kaleido.settings import Settings

from ..service_helpers import ADMIN, ADMIN_TOKEN, serving
from .conftest import ops, secured_settings

WRONG = {"token": "not-the-admin-token-at-all"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@asynccontextmanager
async def signed_in(running: Running) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with ops(running) as http:
        r = await http.post("/ops/login", data={"token": ADMIN_TOKEN, "next": "/ops/streams"})
        assert r.status_code == 303, r.text
        page = await http.get("/ops/streams")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        yield http, found.group(1)


def copy_of(running: Running, http: httpx.AsyncClient) -> httpx.AsyncClient:
    thief = ops(running)
    for cookie in http.cookies.jar:
        thief.cookies.set(cookie.name, cookie.value or "", path=cookie.path)
    return thief


async def test_sign_in_attempts_are_slowed_and_every_failure_is_logged(
    secured: Running,
) -> None:
    """Finding 6: about 800 guesses/s, and no log. Now a client address gets
    ATTEMPTS_PER_MINUTE attempts a minute (then 429 with Retry-After), and each failure is
    logged with its address."""
    async with ops(secured) as http:
        for _ in range(2):  # a second go only if the first straddled a minute
            minute = int(time.time() // 60)
            await service_of(secured).backends.redis.execute("FLUSHALL")
            with capture_logs() as logs:
                codes = [(await http.post("/ops/login", data=WRONG)).status_code
                         for _ in range(ATTEMPTS_PER_MINUTE + 1)]  # fmt: skip
            if int(time.time() // 60) == minute:
                break
        assert codes == [401] * ATTEMPTS_PER_MINUTE + [429]
        slowed = await http.post("/ops/login", data={"token": ADMIN_TOKEN})
        assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) <= 60
        assert "Too many sign-in attempts from your address" in slowed.text
        scripted = [(await http.get("/ops/streams", headers=ADMIN)).status_code for _ in range(8)]
        assert scripted == [200] * 8  # a script's bearer header is no sign-in attempt
    failures = [e for e in logs if e["event"] == "console.signin_failed"]
    assert len(failures) == ATTEMPTS_PER_MINUTE
    assert {e["client"] for e in failures} == {"127.0.0.1"}


async def test_repeated_failures_lock_the_address_out_but_not_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After LOCK_AFTER failures even the right token is refused from that address, for
    LOCK_SECONDS; another client is not affected (addresses behind a trusted proxy)."""
    monkeypatch.setattr("kaleido.http.console.store.ATTEMPTS_PER_MINUTE", 100)
    monkeypatch.setattr("kaleido.http.console.store.LOCK_AFTER", 3)
    proxied = secured_settings(settings, trusted_proxies=("127.0.0.1/32",))
    attacker = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    someone = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    async with serving(proxied) as running, ops(running) as http:
        for _ in range(3):
            assert (await http.post("/ops/login", data=WRONG, headers=attacker)).status_code == 401
        locked = await http.post("/ops/login", data={"token": ADMIN_TOKEN}, headers=attacker)
        assert locked.status_code == 429 and "locked after 3 failed sign-ins" in locked.text
        assert int(locked.headers["retry-after"]) > 60
        fine = await http.post("/ops/login", data={"token": ADMIN_TOKEN}, headers=someone)
        assert fine.status_code == 303
        # a wrong bearer header on a console page counts the same way
        bearer = {**attacker, "Authorization": "Bearer guess-guess-guess"}
        assert (await http.get("/ops", headers=bearer)).status_code == 429


async def test_a_copied_cookie_stops_working_when_its_session_signs_out(
    secured: Running,
) -> None:
    """Finding 7: signing out only cleared the browser's cookie; a copy and its CSRF token
    kept working for up to 12 h. Now sign-out ends the session in Redis."""
    async with signed_in(secured) as (http, csrf), copy_of(secured, http) as thief:
        assert (await thief.get("/ops/streams")).status_code == 200
        out = await http.post("/ops/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert (await thief.get("/ops/streams")).status_code == 303  # to the sign-in form
        late = await thief.post("/ops/logout/everywhere", data={"csrf": csrf})
        assert late.status_code == 401 and "Sign in first" in late.text


async def test_sign_out_everywhere_ends_every_session_in_every_worker(
    settings: Settings,
) -> None:
    """Two processes (as `--workers 2`) share the sessions through Redis: a session made on
    one works on the other, and "sign out everywhere" on either ends them all."""
    shared = secured_settings(settings)
    async with serving(shared) as one, serving(shared) as two:
        async with signed_in(one) as (alice, _), signed_in(two) as (bob, bob_csrf):
            async with copy_of(two, alice) as alice_on_two:
                assert (await alice_on_two.get("/ops/streams")).status_code == 200
                r = await bob.post("/ops/logout/everywhere", data={"csrf": bob_csrf})
                assert r.status_code == 303
                assert (await alice.get("/ops/streams")).status_code == 303
                assert (await alice_on_two.get("/ops/streams")).status_code == 303
                assert (await bob.get("/ops/streams")).status_code == 303


async def test_the_cookie_is_secure_and_host_prefixed_behind_a_tls_proxy(
    settings: Settings,
) -> None:
    """Finding 12: behind a TLS-terminating proxy the cookie was never Secure. With the proxy
    in KALEIDO_TRUSTED_PROXIES its X-Forwarded-Proto counts; from anyone else it does not."""
    via_tls = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    proxied = secured_settings(settings, trusted_proxies=("127.0.0.1/32",))
    async with serving(proxied) as running, ops(running) as http:
        r = await http.post("/ops/login", data={"token": ADMIN_TOKEN}, headers=via_tls)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-kaleido_ops=")
        assert "Secure" in cookie and "Path=/;" in cookie and "Domain" not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        plain = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"}
        refused = await http.post("/ops/login", data={"token": ADMIN_TOKEN}, headers=plain)
        assert refused.status_code == 403 and "signs in only from this machine" in refused.text
    async with serving(secured_settings(settings)) as running, ops(running) as http:
        spoofed = await http.post("/ops/login", data={"token": ADMIN_TOKEN}, headers=via_tls)
        cookie = spoofed.headers["set-cookie"]  # the headers of an untrusted peer: ignored
        assert cookie.startswith("kaleido_ops=") and "Secure" not in cookie
        assert "Path=/ops" in cookie


async def test_console_posts_without_the_sessions_csrf_token_are_refused(
    secured: Running,
) -> None:
    """Held: CSRF. A post without the token, with another session's token, or from a foreign
    Origin does nothing."""
    async with signed_in(secured) as (http, csrf), signed_in(secured) as (_, other_csrf):
        target = "/ops/logout/everywhere"
        assert (await http.post(target, data={"next": "/ops"})).status_code == 403
        assert (await http.post(target, data={"csrf": other_csrf})).status_code == 403
        foreign = {"Origin": "https://evil.example"}
        assert (await http.post(target, data={"csrf": csrf}, headers=foreign)).status_code == 403
        assert (await http.get("/ops/streams")).status_code == 200  # still signed in


async def test_the_sign_in_never_redirects_off_the_console(secured: Running) -> None:
    """Held: open redirect through `next`."""
    async with ops(secured) as http:
        for target in ("//evil.example/", "https://evil.example/ops", "/ops/\\evil.example"):
            r = await http.post("/ops/login", data={"token": ADMIN_TOKEN, "next": target})
            assert r.status_code == 303 and r.headers["location"] == "/ops", target
            await service_of(secured).backends.redis.execute("FLUSHALL")  # attempts of this minute
