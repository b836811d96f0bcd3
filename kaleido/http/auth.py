"""Who is calling: the Kaleidoscope backend's own JWTs, a service token for trusted backends,
and the admin token; and the rule that keeps an unauthenticated API off the network.

- A user token is an HS256 JWT signed with the base64-decoded `KALEIDO_JWT_SECRET` (the
  backend's `JWT_SECRET`), with `userId`, `role`, `sub`, `iat` and `exp` (required), checked
  with 60 s of leeway; the algorithm is pinned, so `alg: none` and RS/HS confusion fail.
- `KALEIDO_SERVICE_TOKEN` acts for any user; the admin token only on admin routes (there a JWT
  with `ROLE_ADMIN` works too). Static tokens are compared in constant time.
- No auth configured: every route is open (a `Caller` of kind "open"), allowed only while the
  public listener is on loopback or `KALEIDO_AUTH=off` says so.

401 (with `WWW-Authenticate`) for a missing, malformed, expired or badly signed token; 403 for
a valid caller without the right.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any, Literal

import attrs
import jwt

from kaleido.errors import ConfigError
from kaleido.http.errors import BadRequest
from kaleido.logs import get_logger
from kaleido.setting_values import jwt_key
from kaleido.settings import Settings

log = get_logger("kaleido.http.auth")

ROLE_USER = "ROLE_USER"
ROLE_MODERATOR = "ROLE_MODERATOR"
ROLE_ADMIN = "ROLE_ADMIN"
ROLES = (ROLE_USER, ROLE_MODERATOR, ROLE_ADMIN)
LEEWAY = 60  # seconds of clock skew, as the Kaleidoscope backend allows
ALGORITHM = "HS256"

CallerKind = Literal["open", "user", "service", "admin"]


class Unauthorized(BadRequest):
    """401: the request carries no credential this service accepts."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 401)
        description = message.replace('"', "'")
        self.headers = {
            "WWW-Authenticate": f'Bearer realm="kaleido", error="invalid_token", '
            f'error_description="{description}"'
        }


class Forbidden(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


@attrs.frozen
class Caller:
    kind: CallerKind
    user_id: int | None = None
    role: str | None = None

    @property
    def trusted(self) -> bool:
        """Acts for any user: the service token, or an API without auth."""
        return self.kind in ("open", "service", "admin")

    @property
    def moderates(self) -> bool:
        return self.trusted or self.role in (ROLE_MODERATOR, ROLE_ADMIN)

    def acts_for(self, user_id: int) -> bool:
        return self.trusted or self.user_id == user_id

    def require_user(self, user_id: int, what: str) -> None:
        if not self.acts_for(user_id):
            raise Forbidden(f"{what}: user {self.user_id}'s token cannot act for user {user_id}")


OPEN = Caller("open")


def _same(given: str, configured: str | None) -> bool:
    return configured is not None and hmac.compare_digest(given.encode(), configured.encode())


@attrs.frozen
class Authenticator:
    """Turns an `Authorization` header into a `Caller` (or a 401)."""

    key: bytes | None = attrs.field(default=None, repr=False)
    service_token: str | None = attrs.field(default=None, repr=False)
    admin_token: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        key = jwt_key(settings.jwt_secret) if settings.jwt_secret else None
        return cls(key, settings.service_token, settings.admin_token)

    @property
    def enabled(self) -> bool:
        return self.key is not None or self.service_token is not None

    def user_route(self, authorization: str | None) -> Caller:
        """The caller of a `/v1` user route."""
        if not self.enabled:
            return OPEN
        token = _bearer(authorization)
        if _same(token, self.service_token):
            return Caller("service")
        return self._user(token)

    def admin_route(self, authorization: str | None) -> Caller:
        """The caller of an admin route: the admin token or a JWT with ROLE_ADMIN, else 401/403."""
        if self.admin_token is None and self.key is None:
            raise Forbidden("admin routes are disabled: KALEIDO_ADMIN_TOKEN is not set")
        token = _bearer(authorization)
        if _same(token, self.admin_token):
            return Caller("admin")
        if self.key is None or token.count(".") != 2:
            raise Forbidden("admin route: wrong token")
        caller = self._user(token)
        if caller.role != ROLE_ADMIN:
            raise Forbidden(f"admin route: the token's role is {caller.role}, not {ROLE_ADMIN}")
        return caller

    def _user(self, token: str) -> Caller:
        if self.key is None:
            raise Unauthorized("not a valid token for this service")
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[ALGORITHM], leeway=LEEWAY,
                options={"require": ["exp"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature is not valid") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {_short(str(exc))}") from None
        return Caller("user", _user_id(claims), _role(claims))


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing 'Authorization: Bearer <token>' header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return token.strip()


def _user_id(claims: dict[str, Any]) -> int:
    value = claims.get("userId")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise Unauthorized("the token's userId claim is not a positive 64-bit integer")
    return value


def _role(claims: dict[str, Any]) -> str:
    value = claims.get("role")
    if value not in ROLES:
        raise Unauthorized(f"the token's role claim is not one of {', '.join(ROLES)}")
    return str(value)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------------------- exposure


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to open user routes without auth to the network (ConfigError: exit 2)."""
    configured = bool(settings.jwt_secret or settings.service_token)
    if settings.auth == "off" and configured:
        raise ConfigError(
            "KALEIDO_AUTH=off contradicts KALEIDO_JWT_SECRET / KALEIDO_SERVICE_TOKEN: unset one"
        )
    if settings.auth == "off":
        log.warning(
            "auth.off",
            http=f"{settings.http_host}:{settings.http_port}",
            detail="KALEIDO_AUTH=off: user routes are open to whoever reaches the public listener",
        )
        return
    if configured or is_loopback(settings.http_host):
        return
    raise ConfigError(
        f"KALEIDO_HTTP_BIND is {settings.http_host}:{settings.http_port}, not loopback, and no "
        "auth is configured: set KALEIDO_JWT_SECRET and/or KALEIDO_SERVICE_TOKEN (or "
        "KALEIDO_AUTH=off to serve user routes to anyone)"
    )


def mint_token(
    settings: Settings, user_id: int, role: str = ROLE_USER, *, ttl: int = 3600,
    username: str | None = None, now: int | None = None,
) -> str:  # fmt: skip
    """A token as the Kaleidoscope backend signs it (for `kaleido token`, tests, development)."""
    if not settings.jwt_secret:
        raise ConfigError("kaleido token: set KALEIDO_JWT_SECRET (the backend's JWT_SECRET)")
    issued = int(time.time()) if now is None else now
    claims = {
        "sub": username or f"user{user_id}",
        "userId": user_id,
        "role": role,
        "iat": issued,
        "exp": issued + ttl,
    }
    return jwt.encode(claims, jwt_key(settings.jwt_secret), algorithm=ALGORITHM)
