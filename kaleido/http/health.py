"""`/healthz` (the process answers) and `/readyz` (Redis, PostgreSQL and every actor are up)."""

from __future__ import annotations

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


async def readyz(request: Request) -> Response:
    service: Service = request.app.state.service
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
    body = {"ready": ready, "checks": checks, "actors": actors}
    return JSONResponse(body, status_code=200 if ready else 503)


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
