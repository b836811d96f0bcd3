"""Kaleido embedded in a trio program through the public API only (`import kaleido`), as the
README shows it: `test_the_readme_snippet_runs` runs the README's snippet itself."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import kaleido
from kaleido import open_kaleido
from kaleido.app import service_of
from kaleido.gateways import Backends
from kaleido.settings import Settings
from kaleido.supervisor import SupervisorGaveUp

from .conftest import REPO
from .docs_snippets import snippet
from .processes import free_port, kaleido_env, wait_ready
from .views_helpers import create_posts, pg_view_counts
from .waiting import wait_until


def readme_snippet() -> str:
    """The Python block of the README's "Embedding Kaleido in a trio program" section."""
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.split("## Embedding Kaleido in a trio program", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None, "README.md: no python block under its Embedding section"
    return block[1]


async def test_the_readme_snippet_runs(settings: kaleido.Settings, backends: Backends) -> None:
    """The snippet, its placeholders filled: this test's settings, one user and one post, the
    list's `...` dropped. The same view twice counts once, and the sync moves it."""
    code = readme_snippet()
    code = code.replace("kaleido.Settings(redis_url=..., database_url=...)", "settings")
    code = code.replace(", ...]", "]")
    assert "..." not in code, code
    body = textwrap.indent(code, "    ")
    source = f"async def snippet(settings, user_id, post_id):\n{body}\n    return locals()\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    await create_posts(backends, 17)
    done = await namespace["snippet"](settings, 42, 17)
    assert done["n"] == 1
    assert done["report"].views == 1
    assert await pg_view_counts(backends) == {17: 1}


def test_the_public_api_is_declared_and_light() -> None:
    assert set(kaleido.__all__) >= {"open_kaleido", "serve", "Settings", "Kaleido", "SyncReport"}
    # `import kaleido` leaves the HTTP stack unloaded until `kaleido.serve` is asked for.
    code = (
        "import sys, kaleido; assert not {'starlette', 'hypercorn'} & set(sys.modules); "
        "kaleido.serve; assert 'starlette' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_settings_from_the_environment() -> None:
    settings = kaleido.Settings.from_env({"KALEIDO_SYNC_INTERVAL": "60"})
    assert settings.sync_interval == 60
    with pytest.raises(kaleido.ConfigError, match="KALEIDO_SYNC_INTERVAL"):
        kaleido.Settings.from_env({"KALEIDO_SYNC_INTERVAL": "soon"})


async def test_record_read_and_sync_as_the_readme_shows(
    settings: kaleido.Settings, backends: Backends
) -> None:
    await create_posts(backends, 17)
    async with kaleido.open_kaleido(settings) as k:
        assert k.views.record_nowait(42, 17) is True
        result = await k.views.record([(42, 17), (43, 17)])
        assert (result.counted, result.duplicates) == (1, 1)  # 42 was queued first
        assert await k.views.total(17) == 2
        report = await k.sync_now()
        assert report.views == 2
        assert await k.views.total(17) == 2
    assert await pg_view_counts(backends) == {17: 2}


async def test_a_cancelled_caller_loses_no_view(
    settings: kaleido.Settings, backends: Backends
) -> None:
    """The caller's nursery is cancelled right after queueing views without waiting: the drain
    (shielded) writes them and syncs them on the way out."""
    await create_posts(backends, 5)
    queued = trio.Event()

    async def app() -> None:
        async with kaleido.open_kaleido(settings) as k:
            for user in range(1, 1001):
                assert k.views.record_nowait(user, 5)
            queued.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await queued.wait()
        nursery.cancel_scope.cancel()
    assert await pg_view_counts(backends) == {5: 1000}


async def test_serve_starts_in_the_callers_nursery(
    settings: kaleido.Settings, backends: Backends
) -> None:
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            lambda task_status: kaleido.serve(settings, task_status=task_status)
        )
        base = "http://" + running.http_addresses[0].split("://")[-1]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            r = await http.post("/v1/views", json={"userId": 1, "postId": 3})
            assert r.status_code == 202
        running.stop()
    assert await pg_view_counts(backends) == {3: 1}  # synced on the way out


async def test_open_kaleido_needs_both_urls(settings: kaleido.Settings) -> None:
    with pytest.raises(kaleido.ConfigError, match=r"needs Settings\.redis_url"):
        async with kaleido.open_kaleido(attrs.evolve(settings, redis_url=None)):
            pass


async def test_actors_giving_up_end_the_callers_block_before_the_backends_close(
    settings: Settings,
) -> None:
    """A caller's call still waiting on PostgreSQL when the supervisor gives up is cancelled
    while the backends' event loop is still open; the error is the supervisor's."""
    waiting = trio.Event()

    async def crashing(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await waiting.wait()
        raise RuntimeError("a bug")

    with pytest.raises(BaseException) as caught:
        async with open_kaleido(settings) as k:
            service = service_of(k)
            service.supervisor.max_crashes = 0
            await service.supervisor.start("crashing", crashing)
            waiting.set()
            await service.backends.postgres.fetchval("SELECT pg_sleep(10)")
    error = caught.value
    assert isinstance(error, BaseExceptionGroup), error
    gave_up, rest = error.split(SupervisorGaveUp)
    assert gave_up is not None and rest is None, error


# --------------------------------------------------------------------------- the host's signals


def _host_env(settings: Settings, port: int) -> dict[str, str]:
    assert settings.redis_url is not None and settings.database_url is not None
    return kaleido_env(
        KALEIDO_REDIS_URL=settings.redis_url,
        KALEIDO_DATABASE_URL=settings.database_url,
        KALEIDO_HTTP_BIND=f"127.0.0.1:{port}",
        KALEIDO_SYNC_INTERVAL="3600",  # only the drain's last sync takes views to PostgreSQL
        KALEIDO_LOG_FORMAT="json",
        PYTHONPATH=str(REPO),
    )


def _events(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    return [json.loads(line)["event"] for line in lines if line.startswith("{")]


@pytest.mark.slow
async def test_a_program_with_its_own_sigint_handling_embeds_serve(
    settings: Settings, backends: Backends, tmp_path: Path
) -> None:
    """docs/embedding.md's host program: Ctrl-C reaches the program, not Kaleido; Kaleido drains
    when the program cancels it (the views reach PostgreSQL only through the drain's last
    sync), and its logs go to standard error, not to the program's output."""
    await create_posts(backends, 3)
    program = tmp_path / "host.py"
    program.write_text(snippet("docs/embedding.md", "host_program"))
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(program)], env=_host_env(settings, port), stdout=stdout,
            stderr=stderr, cwd=tmp_path,
        )  # fmt: skip
        try:
            await wait_ready(port, proc, timeout=60, log=err)  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                for user in (1, 2, 3):
                    r = await http.post("/v1/views", json={"userId": user, "postId": 3})
                    assert r.status_code == 202, r.text
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(60):
                status = await proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert status == 0, err.read_text()[-3000:]
    assert out.read_text().splitlines() == [
        f"serving on http://127.0.0.1:{port}",
        "the program got SIGINT",
        "Kaleido has drained",
    ]
    events = _events(err)
    assert "shutdown.signal" not in events  # Kaleido never saw the signal
    assert "shutdown.begin" in events  # the drain ran
    assert await pg_view_counts(backends) == {3: 3}


@pytest.mark.slow
async def test_the_example_app_drains_on_sigterm(
    settings: Settings, backends: Backends, tmp_path: Path
) -> None:
    """`docker stop` sends SIGTERM: the example finishes its requests and drains Kaleido
    (a last sync) before it exits 0."""
    await create_posts(backends, 5)
    port = free_port()
    env = _host_env(settings, free_port())
    env["TRENDING_BIND"] = f"127.0.0.1:{port}"
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "examples.trending.app"], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

                async def answers() -> bool:
                    assert proc.poll() is None, err.read_text()[-3000:]
                    try:
                        return (await http.get("/trending")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(answers, timeout=60, interval=0.1)
                r = await http.post("/users/7/seen", json={"postIds": [5]})
                assert r.json() == {"new": 1}
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                status = await proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert status == 0, err.read_text()[-3000:]
    assert "shutdown.begin" in _events(err)
    assert await pg_view_counts(backends) == {5: 1}
