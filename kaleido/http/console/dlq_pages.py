"""The console's dead-letter pages: `/ops/dlq/{stream}` lists dead letters (filter by error type,
page by id), replays one or the selected ones, and purges after a typed confirmation.

Every action is a POST that answers with a redirect back to the list (so a reload never repeats
it) carrying only counts. A purge deletes the entries up to the newest one the confirmation page
showed: dead letters that arrive meanwhile are kept for the next look.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaleido.http.console.guard import Access, Form
from kaleido.http.console.render import page
from kaleido.http.errors import BadRequest
from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.streams import dlq_sizes, is_entry_id
from kaleido.service import Service
from kaleido.streams.dlq import (
    dlq_last_id,
    dlq_page,
    dlq_purge_through,
    dlq_replay,
    dlq_size,
)

PAGE_SIZE = 50
MAX_TYPE = 200  # characters of an error type filter


def _stream(request: Request) -> str:
    stream = str(request.path_params["stream"])
    if stream not in INBOUND_STREAMS:
        raise BadRequest(f"no dead-letter queue for stream {stream[:100]!r}; the streams with "
                         f"one are {', '.join(INBOUND_STREAMS)}", 404)  # fmt: skip
    return stream


def _entry_id(value: str, what: str) -> str:
    if not is_entry_id(value):
        raise BadRequest(f"{what}: expected a stream entry id like '1700000000000-0', "
                         f"got {value[:40]!r}")  # fmt: skip
    return value


def _count(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def dlq_index(request: Request, access: Access, form: Form) -> Response:
    """`/ops/dlq`: the first stream whose DLQ holds entries (else the first stream)."""
    service = _service(request)
    sizes = await dlq_sizes(service.backends.redis, service.backends.keys)
    stream = next((s for s in INBOUND_STREAMS if sizes[s]), INBOUND_STREAMS[0])
    return RedirectResponse(f"/ops/dlq/{stream}", 303)


async def dlq_list(request: Request, access: Access, form: Form) -> Response:
    service = _service(request)
    stream = _stream(request)
    error_type = request.query_params.get("type", "")[:MAX_TYPE] or None
    after = request.query_params.get("after") or None
    if after is not None:
        _entry_id(after, "after")
    redis, keys = service.backends.redis, service.backends.keys
    sizes = await dlq_sizes(redis, keys)
    found = await dlq_page(redis, keys, stream, after=after, error_type=error_type, limit=PAGE_SIZE)
    types = sorted({letter.error_type for letter in found.letters})
    return page(
        request, "dlq.html",
        stream=stream, sizes=sizes, streams=INBOUND_STREAMS, found=found, after=after,
        error_type=error_type, types=types,
        replayed=_count(request, "replayed"), purged=_count(request, "purged"),
        next_query=urlencode({k: v for k, v in (("type", error_type),
                                                  ("after", found.next_after)) if v}),
        type_query=lambda t: urlencode({"type": t}),
    )  # fmt: skip


def _back(stream: str, form: Form, **counts: int) -> Response:
    """303 to the list, keeping the error-type filter."""
    query = {k: str(v) for k, v in counts.items()}
    error_type = (form.get("type") or [""])[0][:MAX_TYPE]
    if error_type:
        query["type"] = error_type
    return RedirectResponse(f"/ops/dlq/{stream}?{urlencode(query)}", 303)


async def replay_selected(request: Request, access: Access, form: Form) -> Response:
    stream = _stream(request)
    ids = [_entry_id(v, "ids") for v in form.get("ids", [])]
    if not ids:
        raise BadRequest("nothing selected: tick the dead letters to replay first")
    service = _service(request)
    new_ids = await dlq_replay(service.backends.redis, service.backends.keys, stream, ids)
    return _back(stream, form, replayed=len(new_ids))


async def replay_one(request: Request, access: Access, form: Form) -> Response:
    stream = _stream(request)
    entry_id = _entry_id(str(request.path_params["entry_id"]), "entry id")
    service = _service(request)
    new_ids = await dlq_replay(service.backends.redis, service.backends.keys, stream, [entry_id])
    return _back(stream, form, replayed=len(new_ids))


async def purge_confirm(request: Request, access: Access, form: Form) -> Response:
    stream = _stream(request)
    service = _service(request)
    redis, keys = service.backends.redis, service.backends.keys
    return page(
        request, "purge.html",
        stream=stream, size=await dlq_size(redis, keys, stream),
        through=await dlq_last_id(redis, keys, stream), problem=None,
    )  # fmt: skip


async def purge(request: Request, access: Access, form: Form) -> Response:
    stream = _stream(request)
    service = _service(request)
    redis, keys = service.backends.redis, service.backends.keys
    typed = (form.get("confirm") or [""])[0].strip()
    through = (form.get("through") or [""])[0]
    if typed != stream:
        return page(
            request, "purge.html", 400,
            stream=stream, size=await dlq_size(redis, keys, stream),
            through=await dlq_last_id(redis, keys, stream),
            problem=f"Nothing was purged: type the stream's name, {stream}, to confirm.",
        )  # fmt: skip
    purged = await dlq_purge_through(redis, keys, stream, _entry_id(through, "through"))
    return _back(stream, {}, purged=purged)
