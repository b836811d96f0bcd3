"""A small trio web service that embeds Kaleido: a feed marks posts as seen, and a trending
page ranks posts by their exact view totals. It uses only the public API (`kaleido`).

Run it: `KALEIDO_REDIS_URL=... KALEIDO_DATABASE_URL=... python -m examples.trending.app`
(`TRENDING_BIND`, default 127.0.0.1:8000). SIGINT or SIGTERM (`docker stop`) stops it
gracefully: hypercorn finishes the open requests, then leaving the `open_kaleido` block drains
Kaleido (queued views written, a last sync).
"""

from __future__ import annotations

import os
import signal
import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import kaleido


def create_app(k: kaleido.Kaleido) -> Starlette:
    async def seen(request: Request) -> JSONResponse:
        """POST /users/{userId}/seen {"postIds": [...]}: the posts a user's feed showed."""
        user_id = int(request.path_params["userId"])
        body = await request.json()
        post_ids = body.get("postIds") if isinstance(body, dict) else None
        if not isinstance(post_ids, list) or not post_ids:
            return JSONResponse({"error": 'expected {"postIds": [...]}'}, status_code=400)
        try:
            result = await k.views.record([(user_id, p) for p in post_ids])
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"new": result.counted}, status_code=202)

    async def trending(request: Request) -> JSONResponse:
        """GET /trending?posts=1,2,3: those posts, most viewed first."""
        ids = [int(p) for p in request.query_params.get("posts", "").split(",") if p.isdigit()]
        totals = {p: await k.views.total(p) for p in ids}
        ranked = sorted(totals, key=lambda p: (-totals[p], p))
        return JSONResponse([{"postId": p, "views": totals[p]} for p in ranked])

    return Starlette(
        routes=[
            Route("/users/{userId:int}/seen", seen, methods=["POST"]),
            Route("/trending", trending, methods=["GET"]),
        ]
    )


async def stop_requested() -> None:
    """Return on the first SIGINT or SIGTERM. The program owns its signals: Kaleido installs
    no handler of its own."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def main() -> None:
    async with kaleido.open_kaleido(kaleido.Settings.from_env()) as k:
        config = Config()
        config.bind = [os.environ.get("TRENDING_BIND", "127.0.0.1:8000")]
        await serve(create_app(k), config, shutdown_trigger=stop_requested)
    # Here Kaleido has drained: queued views are in Redis and synced to PostgreSQL.


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
