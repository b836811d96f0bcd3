"""How console pages are made: one Jinja2 environment (templates from this package, autoescape
always on, undefined names an error), the filters the templates format figures with, and the
security headers every console response carries."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

# No script at all; styles and forms only from the console itself; never inside a frame.
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# `same-origin`, not `no-referrer`: under no-referrer a browser sends `Origin: null` with the
# console's own form posts, and the Origin check could no longer tell them from a foreign page's.
# No other site is ever sent a console URL either way.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
CUT = 200  # characters of a field value shown before the ellipsis


def cut(value: Any, limit: int = CUT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def ago(seconds: float | None) -> str:
    """`42 s`, `7 min`, `3.5 h`, `2.0 d`; `never` for None."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def since(at: float | None) -> str:
    return ago(None if at is None else time.time() - at)


def size(n: float | None) -> str:
    """Bytes as B / KB / MB / GB (powers of 1024)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def number(n: float | None, digits: int = 0) -> str:
    if n is None:
        return "?"
    return f"{n:,.{digits}f}".replace(",", " ")


def clock(at: float | None) -> str:
    """Unix time as `2024-01-01 12:00:00 UTC`."""
    if at is None:
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("kaleido.http.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(cut=cut, ago=ago, since=since, size=size, number=number, clock=clock)


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page; `csrf` (the session's token) and the current path are always there."""
    context.setdefault("csrf", getattr(request.state, "csrf", ""))
    context.setdefault("path", request.url.path)
    html = ENV.get_template(template).render(**context)
    return secure(HTMLResponse(html, status_code=status))


def error_page(request: Request, status: int, message: str, title: str = "") -> Response:
    titles = {401: "Not signed in", 403: "Refused", 404: "Not found", 503: "Unavailable"}
    title = title or titles.get(status, "Error")
    return page(request, "error.html", status, title=title, message=message, code=status)


def stylesheet() -> bytes:
    return resources.files("kaleido.http.console").joinpath("static/console.css").read_bytes()
