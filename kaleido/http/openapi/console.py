"""The ops listener's console pages under `/ops` (HTML, server-rendered; kaleido.http.console):
a session cookie from the login form, or the admin bearer token for scripts."""

from __future__ import annotations

from typing import Any

from kaleido.http.openapi.components import CONSOLE_SECURITY, ENTRY_ID, STREAM, Schema


def _html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _redirect(description: str) -> Schema:
    return {
        "description": description,
        "headers": {"Location": {"description": "Where to go.", "schema": {"type": "string"}}},
    }


_TO_LOGIN = _redirect("No credential: to the login form (`/ops/login?next=...`).")
_BACK = _redirect("Done: back to the stream's list, with the counts in the query.")
_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {
                    "csrf": {
                        "type": "string",
                        "description": "The session's CSRF token (not with a bearer).",
                    },
                    "type": {"type": "string", "description": "The list's error-type filter."},
                },
            }
        }
    },
}


def _form(**fields: Schema) -> Schema:
    form: Schema = {**_FORM}
    schema = form["content"]["application/x-www-form-urlencoded"]["schema"]
    form["content"] = {
        "application/x-www-form-urlencoded": {
            "schema": {**schema, "properties": {**schema["properties"], **fields}}
        }
    }
    return form


def _page_errors(*, post: bool = False, stream: bool = False) -> Schema:
    """A console page's refusals, as HTML pages."""
    answers = {
        "401": _html("A wrong credential (or, on a post, a session that has ended)."),
        "403": _html("The console is disabled, a wrong token, or a post's origin/CSRF check."),
        "405": _html("The route does not take this method."),
        "429": _html("Too many sign-in attempts from this address."),
        "500": _html("A bug."),
        "503": _html("A backend does not answer."),
    }
    if stream:
        answers["404"] = _html("No dead-letter queue for that stream.")
    if post:
        answers |= {
            "400": _html("The form is not valid."),
            "413": _html("The form is over 64 KB."),
            "415": _html("Not a urlencoded form."),
        }
    return answers


def _page(operation_id: str, summary: str, **extra: Any) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["console"],
        "security": CONSOLE_SECURITY,
        **extra,
    }


PATHS: Schema = {
    "/ops": {
        "get": _page(
            "consoleOverview",
            "The console's overview page",
            responses={"200": _html("The overview."), "303": _TO_LOGIN, **_page_errors()},
        ),
    },
    "/ops/streams": {
        "get": _page(
            "consoleStreams",
            "The streams page",
            responses={"200": _html("The streams."), "303": _TO_LOGIN, **_page_errors()},
        ),
    },
    "/ops/dlq": {
        "get": _page(
            "consoleDlqIndex",
            "To the first stream whose DLQ holds entries",
            responses={
                "303": _redirect("To `/ops/dlq/{stream}` (or, no credential, to the login form)."),
                **_page_errors(),
            },
        ),
    },
    "/ops/dlq/{stream}": {
        "get": _page(
            "consoleDlqList",
            "A page of a stream's dead letters",
            parameters=[
                STREAM,
                {
                    "name": "type",
                    "in": "query",
                    "required": False,
                    "description": "Only this error type.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "The page after this entry (empty: the first page).",
                    "schema": {"anyOf": [ENTRY_ID, {"const": ""}]},
                },
                {
                    "name": "replayed",
                    "in": "query",
                    "required": False,
                    "description": "A count to report.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "purged",
                    "in": "query",
                    "required": False,
                    "description": "A count to report.",
                    "schema": {"type": "string"},
                },
            ],
            responses={
                "200": _html("The dead letters."),
                "303": _TO_LOGIN,
                "400": _html("`after` is not an entry id."),
                **_page_errors(stream=True),
            },
        ),
    },
    "/ops/dlq/{stream}/replay": {
        "post": _page(
            "consoleReplaySelected",
            "Replay the ticked dead letters",
            parameters=[STREAM],
            requestBody=_form(ids={"type": "array", "items": ENTRY_ID}),
            responses={"303": _BACK, **_page_errors(post=True, stream=True)},
        ),
    },
    "/ops/dlq/{stream}/replay/{entry_id}": {
        "post": _page(
            "consoleReplayOne",
            "Replay one dead letter",
            parameters=[
                STREAM,
                {"name": "entry_id", "in": "path", "required": True, "schema": ENTRY_ID},
            ],
            requestBody=_form(),
            responses={"303": _BACK, **_page_errors(post=True, stream=True)},
        ),
    },
    "/ops/dlq/{stream}/purge": {
        "get": _page(
            "consolePurgeConfirm",
            "The purge confirmation form",
            parameters=[STREAM],
            responses={"200": _html("The form."), "303": _TO_LOGIN, **_page_errors(stream=True)},
        ),
        "post": _page(
            "consolePurge",
            "Purge a stream's DLQ through an entry",
            parameters=[STREAM],
            requestBody=_form(
                confirm={"type": "string", "description": "The stream's name, typed."},
                through={**ENTRY_ID, "description": "The last entry to purge."},
            ),
            responses={
                "200": _html("Not confirmed: nothing purged."),
                "303": _BACK,
                **_page_errors(post=True, stream=True),
            },
        ),
    },
    "/ops/login": {
        "get": {
            "operationId": "consoleLoginForm",
            "summary": "The sign-in form",
            "tags": ["console"],
            "security": [],
            "parameters": [
                {
                    "name": "next",
                    "in": "query",
                    "required": False,
                    "description": "A console path to go to after signing in.",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": _html("The form."),
                "403": _html("The console is disabled."),
                "405": _html("The route does not take this method."),
            },
        },
        "post": {
            "operationId": "consoleLogin",
            "summary": "Sign in with the admin token (or a JWT with ROLE_ADMIN)",
            "tags": ["console"],
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"token": {"type": "string"}, "next": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "303": {
                    **_redirect("Signed in: to `next`, with the session cookie."),
                    "headers": {
                        "Set-Cookie": {"schema": {"type": "string"}},
                        "Location": {"schema": {"type": "string"}},
                    },
                },
                "401": _html("Not signed in: a wrong token."),
                "403": _html("Disabled, a foreign origin, or plain http off loopback."),
                "400": _html("The form is not valid."),
                "405": _html("The route does not take this method."),
                "413": _html("The form is over 64 KB."),
                "415": _html("Not a urlencoded form."),
                "429": _html("Too many sign-in attempts from this address."),
                "500": _html("A bug."),
                "503": _html("A backend does not answer."),
            },
        },
    },
    "/ops/logout": {
        "post": _page(
            "consoleLogout",
            "End this session",
            requestBody=_form(),
            responses={
                "303": _redirect("Signed out: to the login form."),
                **_page_errors(post=True),
            },
        ),
    },
    "/ops/logout/everywhere": {
        "post": _page(
            "consoleLogoutEverywhere",
            "End every console session",
            requestBody=_form(),
            responses={
                "303": _redirect("Signed out: to the login form."),
                **_page_errors(post=True),
            },
        ),
    },
    "/ops/static/console.css": {
        "get": {
            "operationId": "consoleStylesheet",
            "summary": "The console's stylesheet",
            "tags": ["console"],
            "security": [],
            "responses": {
                "200": {
                    "description": "CSS.",
                    "content": {"text/css": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}
