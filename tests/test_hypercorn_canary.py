"""kaleido.http.connection builds on hypercorn's protocol layer, not its public API. These
checks fail first (and say what moved) when a hypercorn release changes a part it relies on;
pyproject.toml bounds the version to the ones checked here."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import h11
import hypercorn.config
import hypercorn.events
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import hypercorn.trio.worker_context
import hypercorn.typing

PROTOCOL_ARGUMENTS = [
    "self", "app", "config", "context", "task_group", "connection_state", "ssl", "client",
    "server", "send",
]  # fmt: skip


def test_the_installed_hypercorn_is_within_the_checked_versions() -> None:
    installed = tuple(int(part) for part in version("hypercorn").split(".")[:2])
    assert (0, 17) <= installed < (0, 19), installed


def test_the_protocol_classes_take_the_arguments_kaleido_passes() -> None:
    for protocol in (hypercorn.protocol.h11.H11Protocol, hypercorn.protocol.h2.H2Protocol):
        assert list(inspect.signature(protocol.__init__).parameters) == PROTOCOL_ARGUMENTS
        assert inspect.iscoroutinefunction(protocol.handle)
        assert inspect.iscoroutinefunction(protocol.initiate)
    h2_initiate = inspect.signature(hypercorn.protocol.h2.H2Protocol.initiate).parameters
    assert list(h2_initiate) == ["self", "headers", "settings"]
    assert isinstance(hypercorn.protocol.h2.H2Protocol.idle, property)


def test_http11_decides_upgrades_in_check_protocol() -> None:
    h11_module = hypercorn.protocol.h11
    check = h11_module.H11Protocol._check_protocol
    assert inspect.iscoroutinefunction(check)
    assert list(inspect.signature(check).parameters) == ["self", "event"]
    source = inspect.getsource(h11_module.H11Protocol._handle_events)
    assert "await self._check_protocol(event)" in source
    assert "await self.send(Updated(idle=False))" in source
    request = h11.Request(method="GET", target="/", headers=[("Host", "k")])
    upgrade = h11_module.H2CProtocolRequiredError(b"rest", request)
    assert (upgrade.data, upgrade.settings) == (b"rest", b"")
    assert (b":path", b"/") in upgrade.headers
    assert h11_module.H2ProtocolAssumedError(b"rest").data == b"rest"


def test_the_task_group_and_events_kaleido_provides_and_handles() -> None:
    http_stream = inspect.getsource(hypercorn.protocol.http_stream)
    assert "await self.task_group.spawn_app(" in http_stream
    h2_source = inspect.getsource(hypercorn.protocol.h2)
    assert "self.task_group.spawn(self.send_task)" in h2_source
    for name in ("RawData", "Closed", "Updated"):
        assert hasattr(hypercorn.events, name)
    assert "idle" in inspect.signature(hypercorn.events.Updated).parameters
    context = hypercorn.trio.worker_context.WorkerContext(None)
    assert hasattr(context, "terminated") and hasattr(context, "event_class")
    assert callable(hypercorn.typing.ConnectionState)
    config = hypercorn.config.Config()
    for setting in ("max_app_queue_size", "h2_max_concurrent_streams", "backlog"):
        assert hasattr(config, setting)
