"""JSON error bodies: every error the API sends is `{"error": "..."}` with a 4xx or 503."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from kaleido.errors import BackendError, TransientError
from kaleido.logs import get_logger

log = get_logger("kaleido.http")


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
    headers = dict(exc.headers) if exc.headers else None  # a 405's `Allow`
    return error_response(exc.detail, exc.status_code, headers)


async def on_backend_error(request: Request, exc: Exception) -> Response:
    # A backend outage is the server's state, not the client's fault: 503, retry later.
    status = 503 if isinstance(exc, TransientError) else 500
    return error_response(str(exc), status)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client closed its connection before its body arrived: nobody reads an answer, and
    it is no bug (no traceback); the request's slot is freed at once."""
    log.info("http.client_disconnected", path=request.url.path, method=request.method)
    return Response(status_code=400)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: a JSON 500 naming the correlation id (to find the traceback in the logs)."""
    cid = request.scope.get("state", {}).get("correlation_id")
    log.error("http.unhandled", path=request.url.path, method=request.method, exc_info=exc)
    return JSONResponse(
        {"error": "internal error; the logs have its traceback", "correlationId": cid},
        status_code=500,
    )


EXCEPTION_HANDLERS = {
    Exception: on_unexpected,
    ClientDisconnect: on_client_gone,
    BadRequest: on_bad_request,
    HTTPException: on_http_exception,
    BackendError: on_backend_error,
}
