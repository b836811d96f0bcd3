"""The public embedding surface: Settings checked on construction, `Kaleido.posts`, the old
names still working (with a warning) for one release, hypercorn left as it is, and the shipped
redis.conf inside the package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import warnings
from importlib import resources

import pytest
import trio

import kaleido
from kaleido.app import service_of
from kaleido.devstack import default_redis_conf
from kaleido.gateways import Backends
from kaleido.service import Service

from .conftest import REPO, with_settings
from .views_helpers import create_posts

# --------------------------------------------------------------------------- Settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sync_interval": -1}, "Settings.sync_interval: expected a positive number of seconds"),
        ({"sync_interval": float("nan")}, "Settings.sync_interval: expected a positive number"),
        ({"shutdown_deadline": "10"}, "Settings.shutdown_deadline: expected a number"),
        ({"workers": 0}, "Settings.workers: expected a positive whole number, got 0"),
        ({"workers": 65}, "Settings.workers: expected from 1 to 64 workers"),
        ({"workers": True}, "Settings.workers: expected a positive whole number"),
        ({"key_prefix": "a b"}, "Settings.key_prefix: expected up to 64 characters"),
        ({"http_port": 70000}, "Settings.http_port: expected a port from 0 to 65535"),
        ({"view_partitions": 48}, "Settings.view_partitions: expected a power of two"),
        ({"redis_url": "http://h"}, "Settings.redis_url: expected a redis://"),
        ({"database_url": "mysql://db/x"}, "Settings.database_url: expected a postgresql://"),
        ({"admin_token": "short"}, "Settings.admin_token: the admin token must be"),
        ({"log_format": "xml"}, "Settings.log_format: expected one of json, console"),
        ({"trusted_proxies": ("10.0.0.0/33",)}, "Settings.trusted_proxies: expected IP"),
        ({"media_url_prefixes": ("http://cdn.example.com/",)}, "Settings.media_url_prefixes:"),
    ],
)
def test_a_bad_setting_raises_one_error_naming_the_field(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(kaleido.ConfigError) as caught:
        kaleido.Settings(**changes)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_settings_are_checked_when_changed_too_and_networks_normalised() -> None:
    settings = kaleido.Settings(trusted_proxies=("10.0.0.5/8", "::1"))
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1/128")
    with pytest.raises(kaleido.ConfigError, match=r"^Settings\.max_deliveries"):
        with_settings(settings, max_deliveries=0)


def test_the_environment_still_names_the_variable() -> None:
    with pytest.raises(kaleido.ConfigError, match=r"^KALEIDO_WORKERS: expected a positive whole"):
        kaleido.Settings.from_env({"KALEIDO_WORKERS": "0"})
    with pytest.raises(kaleido.ConfigError, match=r"^KALEIDO_HTTP_BIND: expected a port"):
        kaleido.Settings.from_env({"KALEIDO_HTTP_BIND": "h:70000"})


# --------------------------------------------------------------------------- Kaleido.posts


async def test_posts_and_profile_pictures_through_the_public_surface(
    settings: kaleido.Settings, backends: Backends
) -> None:
    cdn = "https://cdn.example.com/"
    async with kaleido.open_kaleido(with_settings(settings, media_url_prefixes=(cdn,))) as k:
        stored = await k.posts.create(17, 42, [(901, cdn + "a.jpg")])
        assert (stored.post_id, stored.media) == (17, 1)
        with pytest.raises(kaleido.PostExists):
            await k.posts.create(17, 42, [])
        changed = await k.posts.replace_media(17, [kaleido.MediaItem(902, cdn + "b.jpg")])
        assert (changed.added, changed.removed) == (1, 1)
        record = await k.posts.read(17)
        assert [m.media_id for m in record.media] == [902]
        request = await k.posts.set_profile_picture(42, cdn + "me.jpg", username="alice")
        assert len(request) == 36  # a UUID names the request
        with pytest.raises(ValueError, match=r"^media\[0\]\.mediaUrl: must start with"):
            await k.posts.create(18, 42, [(903, "https://elsewhere.example.org/a.jpg")])
        with pytest.raises(ValueError, match=r"^postId: expected a positive 64-bit"):
            await k.posts.create(-1, 42, [])
        with pytest.raises(ValueError, match=r"^imageUrl: expected an https URL"):
            await k.posts.set_profile_picture(42, "http://127.0.0.1/me.jpg")
        with pytest.raises(kaleido.PostNotFound):
            await k.posts.replace_media(99, [])
    picture = await backends.postgres.fetchval(
        "SELECT image_url FROM profile_picture_requests WHERE user_id = 42"
    )
    assert picture == cdn + "me.jpg"


# --------------------------------------------------------------------------- the old names


def _deprecated(match: str) -> pytest.WarningsRecorder:
    return pytest.warns(kaleido.KaleidoDeprecationWarning, match=match)


async def test_the_old_names_still_work_and_warn(
    settings: kaleido.Settings, backends: Backends
) -> None:
    await create_posts(backends, 3)
    async with trio.open_nursery() as nursery:
        with _deprecated(r"serve\(handle_signals=\.\.\.\)"):
            running = await nursery.start(
                lambda task_status: kaleido.serve(
                    settings, handle_signals=False, task_status=task_status
                )
            )
        with _deprecated(r"Running\.service is deprecated"):
            assert isinstance(running.service, Service)
        k = running.kaleido
        with _deprecated(r"Kaleido\.service is deprecated"):
            assert k.service is service_of(running)
        with _deprecated(r"Views\.record\(user_id, post_id\) .* use Views\.record_nowait"):
            assert k.views.record(1, 3) is True
        with _deprecated(r"record_and_wait"):
            assert (await k.views.record_and_wait([(2, 3)])).counted == 1
        with _deprecated(r"wait_drained"):
            await k.wait_drained()
        with _deprecated(r"drain_deadline"):
            assert k.drain_deadline is None
        with _deprecated(r"Running\.stop\.set\(\) .* use Running\.stop\(\)"):
            running.stop.set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing
        async with kaleido.open_kaleido(settings) as k:
            assert k.views.record_nowait(3, 3)
            assert (await k.views.record([(4, 3)])).counted == 1
            await k.drained()
            assert await k.views.total(3) == 4


def test_the_new_serve_takes_no_internals() -> None:
    with pytest.raises(TypeError, match="listen_fds"):
        trio.run(lambda: kaleido.serve(kaleido.Settings(), listen_fds=(3, 4)))


# --------------------------------------------------------------------------- what is shipped


def test_serving_leaves_hypercorn_as_it_is() -> None:
    """The connection caps are Kaleido's own accept loop (kaleido.http.server): a program's own
    hypercorn servers keep hypercorn's classes."""
    code = (
        "import hypercorn.trio.run as run, hypercorn.trio.tcp_server as tcp, hypercorn.trio as ht\n"
        "before = (run.TCPServer, tcp.TCPServer, ht.serve, run.worker_serve)\n"
        "import kaleido; kaleido.serve; import kaleido.http.server, kaleido.workers\n"
        "assert before == (run.TCPServer, tcp.TCPServer, ht.serve, run.worker_serve)\n"
        "assert run.TCPServer.__module__ == 'hypercorn.trio.tcp_server'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_redis_conf_is_package_data() -> None:
    shipped = resources.files("kaleido.devstack") / "redis.conf"
    assert shipped.is_file()
    assert default_redis_conf().read_text() == shipped.read_text()
    assert (REPO / "redis.conf").resolve() == default_redis_conf().resolve()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "devstack/redis.conf" in project["tool"]["setuptools"]["package-data"]["kaleido"]
    assert project["project"]["optional-dependencies"]["testing"] == [
        "pytest>=8",
        "pytest-trio>=0.8",
    ]
