"""JSON error bodies: every error the API sends is `{"error": "..."}` with a 4xx or 503."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kaleido.errors import BackendError, TransientError


class BadRequest(Exception):
    """Input the API refuses; the message says what is wrong and where."""

    headers: dict[str, str] | None = None

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_response(
    message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def on_bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return error_response(str(exc), exc.status, exc.headers)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.detail, exc.status_code)


async def on_backend_error(request: Request, exc: Exception) -> Response:
    # A backend outage is the server's state, not the client's fault: 503, retry later.
    status = 503 if isinstance(exc, TransientError) else 500
    return error_response(str(exc), status)


EXCEPTION_HANDLERS = {
    BadRequest: on_bad_request,
    HTTPException: on_http_exception,
    BackendError: on_backend_error,
}
