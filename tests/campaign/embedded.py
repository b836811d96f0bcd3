"""A program that embeds Kaleido (`kaleido.open_kaleido`), as a user's trio program would, for
the campaign: it reads `{"id", "views": [[user, post], ...]}` lines on its standard input,
records each batch with `await views.record`, and answers `{"id", "ok"}` once the views are
durable (ok false: the call failed or took longer than `ANSWER_WITHIN`). It exits, drained, when
its input closes.

    python -m tests.campaign.embedded   # settings from KALEIDO_* variables
"""

from __future__ import annotations

import json
import os
import sys

import trio

from kaleido import Settings, open_kaleido
from kaleido.embedded import Kaleido

ANSWER_WITHIN = 10.0
# Answers go to the original standard output; everything else printed (Kaleido's logs) goes
# to standard error.
ANSWERS = os.fdopen(os.dup(sys.stdout.fileno()), "w")
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def answer(batch: int, ok: bool) -> None:
    ANSWERS.write(json.dumps({"id": batch, "ok": ok}) + "\n")
    ANSWERS.flush()


async def record(k: Kaleido, batch: int, views: list[tuple[int, int]]) -> None:
    ok = False
    with trio.move_on_after(ANSWER_WITHIN):
        try:
            await k.views.record(views)
            ok = True
        except Exception as exc:  # the outcome is unknown; the campaign counts it so
            print(f"record failed: {exc!r}", file=sys.stderr)
    answer(batch, ok)


async def main() -> None:
    settings = Settings.from_env()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with open_kaleido(settings) as k, trio.open_nursery() as nursery:
        buffer = b""
        while chunk := await stdin.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                request = json.loads(line)
                views = [(int(u), int(p)) for u, p in request["views"]]
                nursery.start_soon(record, k, request["id"], views)


if __name__ == "__main__":
    trio.run(main)
