"""The console's browser session: a signed cookie and the CSRF token tied to it (no I/O).

The cookie is `v1.<kind>.<expires>.<nonce>.<signature>`: the signature is an HMAC-SHA256 with
a key derived from the admin secrets (the admin token and the JWT key), so every worker of
`--workers N` accepts the sessions of the others, and changing a secret ends every session. The
CSRF token is an HMAC of the session's nonce: a form of one session is refused in another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import attrs

COOKIE = "kaleido_ops"
LIFETIME = 12 * 3600  # seconds a login lasts
_VERSION = "v1"
_KINDS = ("admin", "user")  # the admin token, or a JWT with ROLE_ADMIN


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@attrs.frozen
class Session:
    kind: str
    expires: int  # unix time
    nonce: str


@attrs.frozen
class SessionKeys:
    """Signs and checks session cookies and CSRF tokens."""

    key: bytes = attrs.field(repr=False)

    @classmethod
    def derive(cls, admin_token: str | None, jwt_key: bytes | None) -> SessionKeys | None:
        """Keys from the admin secrets; None when neither is configured (console disabled)."""
        if admin_token is None and jwt_key is None:
            return None
        material = (admin_token or "").encode() + b"\0" + (jwt_key or b"")
        return cls(hmac.new(b"kaleido ops console session v1", material, hashlib.sha256).digest())

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self.key, text.encode(), hashlib.sha256).digest())

    def issue(self, kind: str, expires: int) -> tuple[Session, str]:
        """A new session and its cookie value."""
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
        session = Session(kind, expires, _b64(secrets.token_bytes(16)))
        body = f"{_VERSION}.{kind}.{expires}.{session.nonce}"
        return session, f"{body}.{self._sign(body)}"

    def verify(self, cookie: str | None, now: float) -> Session | None:
        """The session of a cookie value; None for a missing, forged, malformed or expired one."""
        if not cookie or len(cookie) > 256:
            return None
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != _VERSION:
            return None
        _, kind, expires, nonce, signature = parts
        body = ".".join(parts[:4])
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        if kind not in _KINDS or not expires.isdigit() or int(expires) <= now:
            return None
        return Session(kind, int(expires), nonce)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(
            str(token).encode(), self.csrf_token(session).encode()
        )
