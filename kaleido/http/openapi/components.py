"""The parts both OpenAPI documents share: the auth schemes, the id and error schemas, and the
error answers every route may give (the request limits of kaleido.http.middleware, the JSON
error bodies of kaleido.http.errors). Limits are read from the code that enforces them, so the
documents cannot drift from it."""

from __future__ import annotations

from typing import Any

from kaleido.http.body import MAX_BODY_BYTES
from kaleido.messages import INBOUND_STREAMS
from kaleido.views.model import MAX_ID

Schema = dict[str, Any]

SECURITY_SCHEMES: Schema = {
    "bearerJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "A Kaleidoscope user token: HS256, signed with the base64-decoded "
            "KALEIDO_JWT_SECRET (the backend's JWT_SECRET), with the claims userId (a positive "
            "64-bit integer), role (ROLE_USER, ROLE_MODERATOR or ROLE_ADMIN), sub, iat and exp "
            "(required; 60 s of leeway). It acts for its own user only; on the ops listener a "
            "token with ROLE_ADMIN is an admin credential."
        ),
    },
    "serviceToken": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "KALEIDO_SERVICE_TOKEN, for trusted backends: acts for any user on the /v1 user "
            "routes (compared in constant time). When neither it nor KALEIDO_JWT_SECRET is "
            "set, the user routes are open (only on a loopback listener or with "
            "KALEIDO_AUTH=off)."
        ),
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "KALEIDO_ADMIN_TOKEN, for the admin routes and the ops console (a JWT with "
            "ROLE_ADMIN works too). No header: 401; a wrong token: 403; neither secret "
            "configured: 403 on every admin route."
        ),
    },
    "consoleSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-kaleido_ops",
        "description": (
            "The ops console's session cookie, set by POST /ops/login (`kaleido_ops` instead, "
            "without Secure, for a plain-http client on loopback). Forms posted with it carry "
            "the session's CSRF token in their `csrf` field."
        ),
    },
}

USER_SECURITY: list[Schema] = [{"bearerJwt": []}, {"serviceToken": []}]
ADMIN_SECURITY: list[Schema] = [{"adminToken": []}, {"bearerJwt": []}]
CONSOLE_SECURITY: list[Schema] = [{"consoleSession": []}, {"adminToken": []}, {"bearerJwt": []}]

ID: Schema = {
    "description": "A positive 64-bit id: a JSON integer, or a string of decimal digits.",
    "anyOf": [
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
    ],
}
PATH_ID: Schema = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
ENTRY_ID: Schema = {
    "type": "string",
    "pattern": "^[0-9]{1,20}-[0-9]{1,20}$",
    "description": "A Redis stream entry id, `<milliseconds>-<sequence>` (each part at most "
    "2^64-1).",
    "examples": ["1700000000000-0"],
}

STREAM: Schema = {
    "name": "stream",
    "in": "path",
    "required": True,
    "description": "An inbound stream (the streams that have a dead-letter queue).",
    "schema": {"type": "string", "enum": list(INBOUND_STREAMS)},
}

ERROR: Schema = {
    "type": "object",
    "description": "Every error of the JSON routes: what is wrong, naming the field.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "correlationId": {
            "type": ["string", "null"],
            "description": "Only on a 500: the request's id, to find its traceback in the logs.",
        },
    },
}

SCHEMAS: Schema = {"Error": ERROR}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or {"type": "string"}}


_RETRY_AFTER = {
    "Retry-After": _header("Seconds to wait.", {"type": "string", "pattern": "^[0-9]+$"})
}
_CORRELATION = {
    "X-Correlation-ID": _header(
        "The request's correlation id: the caller's when it sent a usable one, else a new one."
    )
}


def error(description: str, headers: Schema | None = None) -> Schema:
    answer = json_body(ref("Error"), description)
    answer["headers"] = {**_CORRELATION, **(headers or {})}
    return answer


BAD_REQUEST = error("The input is not valid: the message names the field.")
UNAUTHORIZED = error(
    "No usable credential (missing, malformed, expired or badly signed).",
    {"WWW-Authenticate": _header('`Bearer realm="kaleido", error="invalid_token", ...`')},
)
FORBIDDEN = error("A valid credential without the right (or admin routes disabled).")
NOT_FOUND = error("No such resource.")
METHOD = error(
    "The route does not take this method.",
    {"Allow": _header("The methods it takes.")},
)
TIMEOUT = error("The body did not arrive within 10 s.")
TOO_LARGE = error(f"The body is over {MAX_BODY_BYTES} bytes.")
MEDIA_TYPE = error("The body is not `Content-Type: application/json`.")
BUSY = error(
    "Too many requests in flight on this listener (or a backend does not answer); retry later.",
    _RETRY_AFTER,
)
TOO_MANY = error("A rate limit is used up.", _RETRY_AFTER)
BUG = error("A bug: the body names the correlation id of the logged traceback.")


def errors(*, body: bool = False, auth: bool = True, path: bool = False) -> Schema:
    """The error answers of a JSON route: `body` if it reads a JSON body, `auth` if it needs a
    credential, `path` if it has an id or name in its path."""
    answers: Schema = {"400": BAD_REQUEST, "405": METHOD, "500": BUG, "503": BUSY}
    if auth:
        answers |= {"401": UNAUTHORIZED, "403": FORBIDDEN}
    if path:
        answers["404"] = NOT_FOUND
    if body:
        answers |= {"408": TIMEOUT, "413": TOO_LARGE, "415": MEDIA_TYPE}
    return answers
