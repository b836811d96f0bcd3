"""`/healthz` (the process answers) and `/readyz` (Redis, PostgreSQL and every actor are up).

Neither takes a request slot (kaleido.http.middleware), so probes must stay cheap however many
come: concurrent `/readyz` requests share one check of the backends."""

from __future__ import annotations

import attrs
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.errors import BackendError
from kaleido.service import Service

# A readiness probe must answer quickly even when a backend hangs.
PROBE_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _check(name: str, probe: object, results: dict[str, str]) -> None:
    try:
        with trio.fail_after(PROBE_TIMEOUT):
            await probe()  # type: ignore[operator]
        results[name] = "ok"
    except trio.TooSlowError:
        results[name] = f"no answer within {PROBE_TIMEOUT:g} s"
    except BackendError as exc:
        results[name] = str(exc)


@attrs.define
class Readiness:
    """One backend check at a time; whoever asks meanwhile gets its answer."""

    _running: trio.Event | None = None
    _answered_by: trio.Event | None = None  # the check `_answer` comes from
    _answer: tuple[dict[str, object], int] = ({}, 503)

    async def check(self, service: Service) -> tuple[dict[str, object], int]:
        while self._running is not None:
            running = self._running
            await running.wait()
            if self._answered_by is running:
                return self._answer
            # that check was cancelled (its client went away): run one
        self._running = done = trio.Event()
        try:
            answer = await _readiness(service)
            self._answer, self._answered_by = answer, done
        finally:
            self._running = None
            done.set()
        return answer


async def readyz(request: Request) -> Response:
    body, status = await request.app.state.readiness.check(request.app.state.service)
    return JSONResponse(body, status_code=status)


async def _readiness(service: Service) -> tuple[dict[str, object], int]:
    checks: dict[str, str] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_check, "redis", service.backends.redis.ping, checks)
        nursery.start_soon(
            _check, "postgres", lambda: service.backends.postgres.fetchval("SELECT 1"), checks
        )
    actors = {
        name: ("running" if state.running else f"down: {state.last_error or 'starting'}")
        for name, state in service.supervisor.actors.items()
    }
    ready = (
        all(v == "ok" for v in checks.values())
        and service.supervisor.all_running
        and not service.supervisor.stopping.is_set()
    )
    return {"ready": ready, "checks": checks, "actors": actors}, 200 if ready else 503


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
