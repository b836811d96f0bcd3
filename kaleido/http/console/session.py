"""The console's browser session: a signed cookie (itsdangerous) naming a session that Redis
keeps, and the CSRF token tied to it.

The cookie carries the session's id, kind and expiry, signed with a key derived from the admin
secrets (the admin token and the JWT key), so every worker of `--workers N` can read the
others' cookies, and changing a secret ends every session. A readable cookie is not enough:
its session must still be in Redis (kaleido.http.console.store), which is how signing out ends
it everywhere at once, in every worker. The CSRF token is a signature of the session id: a form
of one session is refused in another.

Cookie: `__Host-kaleido_ops` (Secure, Path=/), except for a plain-http client on loopback,
whose browser would drop a Secure cookie: there `kaleido_ops` (Path=/ops). HttpOnly and
SameSite=Strict either way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import attrs
from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer

from kaleido.ops.limits import SESSION_LIFETIME

SECURE_COOKIE = "__Host-kaleido_ops"
LOOPBACK_COOKIE = "kaleido_ops"
LIFETIME = SESSION_LIFETIME  # seconds a login lasts
MAX_COOKIE = 512  # characters of a cookie value worth verifying
_KINDS = ("admin", "user")  # the admin token, or a JWT with ROLE_ADMIN


@attrs.frozen
class Session:
    sid: str
    kind: str
    expires: int  # unix time


@attrs.frozen
class SessionKeys:
    """Signs and reads session cookies and CSRF tokens."""

    cookies: URLSafeTimedSerializer = attrs.field(repr=False)
    csrf: Signer = attrs.field(repr=False)

    @classmethod
    def derive(cls, admin_token: str | None, jwt_key: bytes | None) -> SessionKeys | None:
        """Keys from the admin secrets; None when neither is configured (console disabled)."""
        if admin_token is None and jwt_key is None:
            return None
        material = (admin_token or "").encode() + b"\0" + (jwt_key or b"")
        key = hmac.new(b"kaleido ops console v2", material, hashlib.sha256).digest()
        return cls(
            URLSafeTimedSerializer(key, salt="kaleido ops console session"),
            Signer(key, salt="kaleido ops console csrf"),
        )

    def issue(self, kind: str, expires: int) -> tuple[Session, str]:
        """A new session and its cookie value."""
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
        session = Session(secrets.token_urlsafe(18), kind, expires)
        cookie = self.cookies.dumps([session.sid, kind, expires])
        return session, cookie

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie names; None for a missing, forged, malformed or expired one.
        (Whether it was ended since is Redis' to say.)"""
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        try:
            value = self.cookies.loads(cookie, max_age=LIFETIME)
        except BadSignature:  # includes an expired signature
            return None
        if not (isinstance(value, list) and len(value) == 3):
            return None
        sid, kind, expires = value
        if not isinstance(sid, str) or kind not in _KINDS or not isinstance(expires, int):
            return None
        if expires <= now:
            return None
        return Session(sid, kind, expires)

    def csrf_token(self, session: Session) -> str:
        return self.csrf.get_signature(session.sid).decode()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        if not token or len(token) > MAX_COOKIE:
            return False
        return self.csrf.verify_signature(session.sid, token)
