"""Kaleido's function library: every Script of the package is in it, found by being defined;
it loads on Redis with each function's flags; its version follows every script."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from kaleido.errors import ConfigError
from kaleido.gateways import SCRIPT_MODES, Backends, Script
from kaleido.redis_functions import LIBRARY, VERSION_FUNCTION, library, scripts, version
from kaleido.settings import load_settings

from .conftest import REPO


def scripts_in_the_source() -> dict[str, str]:
    """Every `NAME = Script("name", ...)` at the top level of a module of the package, read
    with `ast` (independently of how the library finds them): script name → module."""
    found = {}
    for path in sorted((REPO / "kaleido").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "Script"
                and isinstance(value.args[0], ast.Constant)
            ):
                found[str(value.args[0].value)] = path.relative_to(REPO).as_posix()
    return found


def test_every_script_of_the_package_is_in_the_library() -> None:
    in_source = scripts_in_the_source()
    assert {s.name for s in scripts()} == set(in_source)
    # Those of today, as a floor: views, the v1 takeover, the layout, the lock, streams, probe.
    assert len(in_source) >= 11 and in_source["record_views_v2"] == "kaleido/views/scripts.py"
    source = library()
    for script in scripts():
        assert f"function_name='{script.function}'" in source


def test_a_function_says_what_it_may_do() -> None:
    by_name = {s.name: s for s in scripts()}
    assert by_name["snapshot_post_v2"].flags == ("no-writes",)
    assert by_name["move_to_batch_v2"].flags == ("allow-oom",)
    assert by_name["record_views_v2"].flags == ()
    read_only = Script("peek", "return redis.call('GET', KEYS[1])", read_only=True)
    assert read_only.command("functions", ["k"], ["a"]) == (
        "FCALL_RO",
        read_only.function,
        1,
        "k",
        "a",
    )
    assert read_only.command("eval", ["k"], []) == ("EVALSHA", read_only.sha, 1, "k")
    assert read_only.function == f"kaleido_peek_{read_only.sha[:10]}"


def test_the_version_follows_every_script() -> None:
    assert len(version()) == 16 and f"return '{version()}'" in library()
    assert library() == library()  # generated the same way every time
    changed = Script("record_views_v2", "return 1")
    assert changed.function != {s.name: s for s in scripts()}["record_views_v2"].function


async def test_the_library_loads_with_each_functions_flags(backends: Backends) -> None:
    redis = backends.redis
    await redis.execute("FUNCTION", "LOAD", "REPLACE", library())
    (listing,) = await redis.execute("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY)
    functions = {}
    for entry in fields(listing)["functions"]:
        described = fields(entry)
        functions[text(described["name"])] = {text(flag) for flag in described["flags"]}
    assert set(functions) == {s.function for s in scripts()} | {VERSION_FUNCTION}
    for script in scripts():
        assert functions[script.function] == set(script.flags), script.name
    assert (await redis.execute("FCALL_RO", VERSION_FUNCTION, 0)).decode() == version()
    # FLUSHALL (the tests' reset) keeps functions: only FUNCTION DELETE or a restart without
    # persistence loses them.
    await redis.execute("FLUSHALL")
    assert (await redis.execute("FCALL_RO", VERSION_FUNCTION, 0)).decode() == version()


def fields(reply: Any) -> dict[str, Any]:
    """A RESP map, however the client shaped it (a dict, or a flat list of pairs)."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {text(key): value for key, value in pairs}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_no_script_is_registered_by_hand() -> None:
    # The library is generated from the package itself: no list of scripts to keep in step.
    text = (REPO / "kaleido" / "redis_functions.py").read_text()
    for name in scripts_in_the_source():
        assert name not in text


def test_the_setting_takes_the_gateways_modes() -> None:
    for mode in SCRIPT_MODES:
        assert load_settings({"KALEIDO_REDIS_SCRIPTS": mode}).redis_scripts == mode
    assert load_settings({}).redis_scripts == "functions"
    with pytest.raises(
        ConfigError, match=r"^KALEIDO_REDIS_SCRIPTS: expected one of functions, eval"
    ):
        load_settings({"KALEIDO_REDIS_SCRIPTS": "lua"})
