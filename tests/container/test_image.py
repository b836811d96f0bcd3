"""The service image (deploy/container/Containerfile), built by scripts/container-build.sh and
run as its users run it: the image's own command (entrypoint and cmd), environment, user and
working folder, against private Redis and PostgreSQL on this machine.

- `buildah run --isolation chroot` (no OCI runtime can run containers here): it shares the
  host's network and PID namespace, so the service listens on loopback ports the test picks,
  and SIGTERM goes straight to its process (buildah does not forward signals, it kills).
- As PID 1: the image's root file system in a PID namespace of its own (`unshare`, `chroot`),
  as a container runtime starts it. PID 1 gets only the signals it handles, so this shows that
  `kaleido run` handles SIGTERM itself and needs no init in front of it.

Each checks views (POST /v1/views, a sync, GET the total), a post (POST /v1/posts), the image's
health check, logs on standard error only, and a clean stop on SIGTERM while views arrive:
exit 0, and every view answered 202 is in the total afterwards. Slow (it builds the image, from
cached layers when nothing changed): `make container-test`, not part of `make test`.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from kaleido.devstack import DevStack
from kaleido.embedded import open_kaleido
from kaleido.settings import Settings
from kaleido.testing import migrated_servers

from ..conftest import REPO
from ..processes import free_port, wait_exit
from ..waiting import wait_until

pytestmark = pytest.mark.container

BUILD = REPO / "scripts" / "container-build.sh"
SERVICE_TOKEN = "container-test-service-token-0123456789"
ADMIN_TOKEN = "container-test-admin-token-0123"
JSON_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {SERVICE_TOKEN}"}
SHUTDOWN_DEADLINE = 10.0
# Where the image installs Kaleido: its process is the one running this script.
KALEIDO_SCRIPT = "/opt/kaleido/bin/kaleido"


@attrs.frozen
class Image:
    name: str
    config: dict[str, Any]  # the Docker config: Entrypoint, Cmd, Env, User, Healthcheck, ...
    build_seconds: float

    @property
    def command(self) -> list[str]:
        return [*(self.config.get("Entrypoint") or []), *(self.config.get("Cmd") or [])]

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


@attrs.define
class Service:
    """A running image: the process the test started, the service's own process in it."""

    proc: subprocess.Popen[bytes]
    http: str
    ops: str
    stdout: Path
    stderr: Path
    pid: int | None = None

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (buildah's image store, unshare, chroot)")


@pytest.fixture(scope="module")
def image() -> Image:
    _root_only()
    started = time.monotonic()
    build = subprocess.run(
        ["bash", str(BUILD)], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-4000:]
    name = build.stdout.split()[-1]
    inspected = subprocess.run(
        ["buildah", "inspect", "--type", "image", name], capture_output=True, text=True, check=True
    )
    return Image(name, json.loads(inspected.stdout)["Docker"]["config"], time.monotonic() - started)


@pytest.fixture(scope="module")
def servers() -> Iterator[DevStack]:
    with migrated_servers(REPO / "redis.conf") as stack:
        yield stack


@pytest.fixture
def container(image: Image) -> Iterator[str]:
    """A working container of the image (its own writable layer), removed afterwards."""
    made = subprocess.run(["buildah", "from", image.name], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    ctr = made.stdout.strip()
    try:
        yield ctr
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def service_env(stack: DevStack, http_port: int, ops_port: int, **extra: str) -> dict[str, str]:
    """What a deployment sets: the backends, auth, two workers as in deploy/compose.yaml; the
    listeners on loopback ports of this machine (the network is shared)."""
    return {
        "KALEIDO_REDIS_URL": stack.redis_url,
        "KALEIDO_DATABASE_URL": stack.database_url,
        "KALEIDO_HTTP_BIND": f"127.0.0.1:{http_port}",
        "KALEIDO_OPS_BIND": f"127.0.0.1:{ops_port}",
        "KALEIDO_SERVICE_TOKEN": SERVICE_TOKEN,
        "KALEIDO_ADMIN_TOKEN": ADMIN_TOKEN,
        "KALEIDO_WORKERS": "2",
        "KALEIDO_SYNC_INTERVAL": "3600",  # syncs when the test asks
        "KALEIDO_SHUTDOWN_DEADLINE": str(SHUTDOWN_DEADLINE),
        "KALEIDO_KEY_PREFIX": f"image{http_port}:",
        **extra,
    }


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (the test's own process tree only)."""
    found: list[int] = []
    parents = {pid}
    while True:
        more = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in parents and int(entry.name) not in found:
                more.append(int(entry.name))
        if not more:
            return found
        found += more
        parents = set(more)


def kaleido_pid(root: int) -> int | None:
    """The service's own process below `root`: the one running the image's `kaleido` script."""
    for pid in descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Python running the script (buildah's own exec helper names it too, as argv[1]).
        if len(argv) > 1 and b"python" in argv[0] and argv[1].decode() == KALEIDO_SCRIPT:
            return pid
    return None


@contextmanager
def started(argv: list[str], tmp_path: Path, http_port: int, ops_port: int) -> Iterator[Service]:
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    service = Service(
        proc, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{ops_port}", stdout, stderr
    )
    try:
        yield service
    finally:
        if proc.poll() is None:
            proc.kill()  # buildah run / unshare: takes the service down with it
            proc.wait(timeout=30)


def buildah_run_argv(image: Image, ctr: str, env: dict[str, str], command: list[str]) -> list[str]:
    argv = ["buildah", "run", "--isolation", "chroot"]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    return [*argv, ctr, "--", *command]


async def wait_ready(service: Service, timeout: float = 60) -> None:
    async def ready() -> bool:
        assert service.proc.poll() is None, f"exited {service.proc.returncode}:\n{service.logs()}"
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(service.http + "/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(ready, timeout=timeout, interval=0.1)
    service.pid = kaleido_pid(service.proc.pid)
    assert service.pid is not None, "the service's process was not found"


async def check_post_and_views(service: Service, post_id: int) -> None:
    """A post, views of it, a sync, and the total over HTTP."""
    async with httpx.AsyncClient(timeout=10) as http:
        post = {
            "postId": post_id,
            "userId": 7,
            "media": [{"mediaId": post_id * 10, "mediaUrl": "https://cdn.example.com/p/1.jpg"}],
        }
        created = await http.post(service.http + "/v1/posts", json=post, headers=JSON_HEADERS)
        assert created.status_code in (200, 201), created.text
        shown = await http.get(service.http + f"/v1/posts/{post_id}", headers=JSON_HEADERS)
        assert shown.status_code == 200, shown.text
        assert shown.json()["postId"] == post_id

        views = [{"userId": user, "postId": post_id} for user in range(1, 6)]
        views.append({"userId": 1, "postId": post_id})  # a duplicate: not counted
        answer = await http.post(service.http + "/v1/views", json=views, headers=JSON_HEADERS)
        assert answer.status_code == 202, answer.text
        assert answer.json()["counted"] == 5

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        synced = await http.post(service.ops + "/v1/admin/sync", headers=admin)
        assert synced.status_code == 200, synced.text
        total = await http.get(service.http + f"/v1/posts/{post_id}/views", headers=JSON_HEADERS)
        assert total.status_code == 200, total.text
        assert total.json()["views"] == 5


async def views_until_stopped(service: Service, post_id: int, accepted: list[int]) -> None:
    """Send batches of views of `post_id` (new users each) until the listener is gone; every
    202 adds its `counted` to `accepted`."""
    user = 1000
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            batch = [{"userId": user + i, "postId": post_id} for i in range(50)]
            user += 50
            try:
                answer = await http.post(
                    service.http + "/v1/views", json=batch, headers=JSON_HEADERS
                )
            except httpx.TransportError:
                return
            if answer.status_code == 202:
                accepted.append(answer.json()["counted"])
            else:
                assert answer.status_code == 503, answer.text  # shutting down: refused whole


async def stop_under_load(service: Service, post_id: int) -> int:
    """SIGTERM to the service while views arrive; its exit status. Returns the views the
    service accepted (202) meanwhile."""
    accepted: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(views_until_stopped, service, post_id, accepted)
        await wait_until(lambda: _true_after(accepted, 3), timeout=30)
        assert service.pid is not None
        os.kill(service.pid, signal.SIGTERM)
        status = await wait_exit(service.proc, SHUTDOWN_DEADLINE + 20)
    assert status == 0, service.logs()[-4000:]
    return sum(accepted)


async def _true_after(accepted: list[int], batches: int) -> bool:
    return len(accepted) >= batches


async def total_views(stack: DevStack, key_prefix: str, post_id: int) -> int:
    """The exact total of a post, read with Kaleido itself after the image has stopped."""
    settings = Settings(
        redis_url=stack.redis_url,
        database_url=stack.database_url,
        key_prefix=key_prefix,
        http_port=0,
        ops_port=0,
        sync_interval=3600.0,
        log_format="console",
    )
    async with open_kaleido(settings) as k:
        return await k.views.total(post_id)


def run_healthcheck(image: Image, ctr: str, env: dict[str, str]) -> int:
    """The image's HEALTHCHECK command, run in the container as a runtime runs it."""
    test = image.config["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    done = subprocess.run(
        buildah_run_argv(image, ctr, env, test[1:]), capture_output=True, timeout=60
    )
    return done.returncode


def check_logs(service: Service) -> None:
    """JSON lines on standard error, from the supervisor and both workers; nothing on stdout."""
    assert service.stdout.read_bytes() == b""
    events = [json.loads(line) for line in service.logs().splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    assert "workers.stopped" in names
    assert names.count("service.stopped") == 2, names


@pytest.fixture
async def stack_and_ports(servers: DevStack) -> AsyncIterator[tuple[DevStack, int, int]]:
    yield servers, free_port(), free_port()


async def test_the_image_serves_views_and_posts_and_stops_cleanly_on_sigterm(
    image: Image, container: str, stack_and_ports: tuple[DevStack, int, int], tmp_path: Path
) -> None:
    stack, http_port, ops_port = stack_and_ports
    assert image.config["User"] == "10001:10001"
    env = service_env(stack, http_port, ops_port)
    argv = buildah_run_argv(image, container, env, image.command)
    assert run_healthcheck(image, container, env) != 0  # nothing listens yet
    with started(argv, tmp_path, http_port, ops_port) as service:
        await wait_ready(service)
        assert run_healthcheck(image, container, env) == 0
        await check_post_and_views(service, post_id=41)
        accepted = await stop_under_load(service, post_id=42)
    assert await total_views(stack, env["KALEIDO_KEY_PREFIX"], 42) == accepted
    check_logs(service)


def pid1_argv(root: str, image: Image, env: dict[str, str]) -> list[str]:
    """The image's command as PID 1 of a new PID namespace, in the image's root file system,
    with the image's user, working folder and environment (plus `env`)."""
    environment = {**image.env, **env}
    user = image.config["User"]
    workdir = image.config["WorkingDir"]
    inner = " ".join(
        [
            f"mount -t proc proc {shlex.quote(root)}/proc &&",
            f"mount --rbind /dev {shlex.quote(root)}/dev &&",
            f"exec chroot --userspec={user} {shlex.quote(root)}",
            f"env -i -C {shlex.quote(workdir)}",
            *(shlex.quote(f"{k}={v}") for k, v in environment.items()),
            *(shlex.quote(part) for part in image.command),
        ]
    )
    return ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", inner]


@pytest.fixture
def root_file_system(container: str) -> str:
    """The working container's root file system, mounted (`buildah rm` unmounts it)."""
    mounted = subprocess.run(["buildah", "mount", container], capture_output=True, text=True)
    assert mounted.returncode == 0, mounted.stderr
    return mounted.stdout.strip()


async def test_as_pid_1_the_image_command_drains_on_sigterm(
    image: Image, root_file_system: str, stack_and_ports: tuple[DevStack, int, int], tmp_path: Path
) -> None:
    stack, http_port, ops_port = stack_and_ports
    env = service_env(stack, http_port, ops_port)
    argv = pid1_argv(root_file_system, image, env)
    with started(argv, tmp_path, http_port, ops_port) as service:
        await wait_ready(service)
        assert service.pid is not None
        status = await trio.Path(f"/proc/{service.pid}/status").read_text()
        ns_pids = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        assert ns_pids.split()[-1] == "1", ns_pids  # PID 1 inside its namespace
        await check_post_and_views(service, post_id=51)
        accepted = await stop_under_load(service, post_id=52)
    assert await total_views(stack, env["KALEIDO_KEY_PREFIX"], 52) == accepted
    check_logs(service)
