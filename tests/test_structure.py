"""The module structure holds: who may import whom, no import cycles, small documented modules.

Imports are read with `ast`, not by importing: a rule broken in a module no test imports still
fails here. "Module level" means what runs at import time: top-level statements and class
bodies, including `if`/`try`/`with` blocks, but not `if TYPE_CHECKING:` blocks nor function
bodies. An import in a function body is "deferred": it runs when the function is called, so it
counts for cycles and layers like any other; only `if TYPE_CHECKING:` imports never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kaleido", "actors")
MAX_LINES = 400


# The composition root: the one module that wires the actors to the rest.
COMPOSITION_ROOT = "kaleido.service"
# What actors must not know about: the processes and front ends that host them.
HOSTS = (
    "kaleido.service",
    "kaleido.embedded",
    "kaleido.app",
    "kaleido.http",
    "kaleido.cli",
    "kaleido.demo",
    "kaleido.devstack",
)
# Loaded only when asked for (`--dev`, `--demo`, tests, benchmarks), never by the service itself.
ON_DEMAND = ("kaleido.devstack", "kaleido.demo")
# Who may import them at module level: themselves, the test helpers, the command line.
ON_DEMAND_USERS = (
    "kaleido.devstack",
    "kaleido.demo",
    "kaleido.testing",
    "kaleido.cli",
    "kaleido.dev_run",
)


@attrs.frozen
class Import:
    target: str  # a module name (for `from m import n`: m, or m.n when that is a module)
    line: int
    module_level: bool
    typing_only: bool = False  # under `if TYPE_CHECKING:`: never runs

    @property
    def runs(self) -> bool:
        """Runs at some point: at import time or when its function is called."""
        return not self.typing_only


@attrs.frozen
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def relpath(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _load() -> dict[str, Module]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return modules


MODULES = _load()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    body: list[ast.stmt], module_level: bool, typing_only: bool = False
) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """Every statement, with whether it runs when the module is imported and whether it is
    under `if TYPE_CHECKING:` (never runs)."""
    for stmt in body:
        yield stmt, module_level, typing_only
        if isinstance(stmt, ast.If):
            checking = _is_type_checking(stmt.test)
            yield from _statements(
                stmt.body, module_level and not checking, typing_only or checking
            )
            yield from _statements(stmt.orelse, module_level, typing_only)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(stmt.body, False, typing_only)
        elif isinstance(stmt, ast.ClassDef):
            yield from _statements(stmt.body, module_level, typing_only)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(stmt, field, None)
                if isinstance(children, list):
                    for child in children:
                        if isinstance(child, ast.ExceptHandler | ast.match_case):
                            yield from _statements(child.body, module_level, typing_only)
                        elif isinstance(child, ast.stmt):
                            yield from _statements([child], module_level, typing_only)


def imports(module: Module) -> list[Import]:
    found = []
    for stmt, module_level, typing_only in _statements(module.tree.body, True):
        if isinstance(stmt, ast.Import):
            found += [
                Import(alias.name, stmt.lineno, module_level, typing_only) for alias in stmt.names
            ]
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                for _ in range(stmt.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            submodules = [f"{base}.{a.name}" for a in stmt.names if f"{base}.{a.name}" in MODULES]
            # `from pkg import sub` needs only what `import pkg.sub` needs: the package as a
            # parent (as every import of a submodule does), not its attributes.
            if len(submodules) < len(stmt.names):
                found.append(Import(base, stmt.lineno, module_level, typing_only))
            found += [Import(sub, stmt.lineno, module_level, typing_only) for sub in submodules]
    return found


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _where(module: Module, imp: Import) -> str:
    return f"{module.relpath}:{imp.line} imports {imp.target}"


def test_the_modules_are_found() -> None:
    # A broken walk would make every rule below pass vacuously.
    assert {"kaleido.service", "kaleido.devstack.stack", "actors.view_syncer"} <= set(MODULES)
    service = {imp.target for imp in imports(MODULES["kaleido.service"]) if imp.module_level}
    assert {"actors.view_syncer", "kaleido.posts"} <= service


def actors_imported_outside_the_root(modules: dict[str, Module]) -> list[str]:
    return [
        _where(m, imp)
        for m in modules.values()
        if _within(m.name, "kaleido") and m.name != COMPOSITION_ROOT
        for imp in imports(m)
        if _within(imp.target, "actors")
    ]


def actors_importing_their_hosts(modules: dict[str, Module]) -> list[str]:
    return [
        _where(m, imp)
        for m in modules.values()
        if _within(m.name, "actors")
        for imp in imports(m)
        if _within(imp.target, HOSTS)
    ]


def on_demand_imported_at_module_level(modules: dict[str, Module]) -> list[str]:
    return [
        _where(m, imp)
        for m in modules.values()
        if not _within(m.name, ON_DEMAND_USERS)
        for imp in imports(m)
        if imp.module_level and _within(imp.target, ON_DEMAND)
    ]


def test_only_the_composition_root_imports_actors() -> None:
    assert actors_imported_outside_the_root(MODULES) == []


def test_actors_do_not_know_their_hosts() -> None:
    assert actors_importing_their_hosts(MODULES) == []


def test_the_dev_stack_and_the_demo_load_only_when_asked() -> None:
    assert on_demand_imported_at_module_level(MODULES) == []


def _fake(name: str, source: str) -> dict[str, Module]:
    path = ROOT / (name.replace(".", "/") + ".py")
    return {name: Module(name, path, ast.parse(source))}


def test_the_rules_catch_a_breach() -> None:
    assert actors_imported_outside_the_root(_fake("kaleido.x", "def f():\n    import actors\n"))
    assert actors_importing_their_hosts(_fake("actors.x", "from kaleido.http import app\n"))
    lazy = "def f():\n    from kaleido.devstack import dev_stack\n"
    typing_only = "if TYPE_CHECKING:\n    from kaleido.demo import start_demo\n"
    eager = "try:\n    from kaleido import demo\nexcept ImportError:\n    pass\n"
    assert on_demand_imported_at_module_level(_fake("kaleido.x", lazy)) == []
    assert on_demand_imported_at_module_level(_fake("kaleido.x", typing_only)) == []
    assert on_demand_imported_at_module_level(_fake("kaleido.x", eager)) == [
        "kaleido/x.py:2 imports kaleido.demo"
    ]
    assert on_demand_imported_at_module_level(_fake("kaleido.testing", eager)) == []


def test_modules_are_small_and_say_what_they_do() -> None:
    too_long = []
    undocumented = []
    for m in MODULES.values():
        lines = len(m.path.read_text().splitlines())
        if lines >= MAX_LINES:
            too_long.append(f"{m.relpath}: {lines} lines")
        if not ast.get_docstring(m.tree):
            undocumented.append(m.relpath)
    assert too_long == []
    assert undocumented == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Who imports whom among Kaleido's modules, deferred imports included (they run too)."""
    return {
        m.name: {
            imp.target
            for imp in imports(m)
            if imp.runs and imp.target in modules and imp.target != m.name
        }
        for m in modules.values()
    }


def test_no_import_cycle_at_all() -> None:
    cycle = _cycle(import_graph(MODULES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# Every deferred import of one of Kaleido's modules, and why it waits: a new one must be added
# here, so that none hides a cycle or a layer breach (both tests above count them anyway).
DEFERRED = {
    ("kaleido.cli", "kaleido.commands"): "the ops commands' backends load only for them",
    ("kaleido.cli", "kaleido.workers"): "the worker supervisor loads only with --workers N",
    ("kaleido.cli", "kaleido.app"): "the service loads only for `kaleido run`",
    ("kaleido.embedded", "kaleido.demo"): "on demand: the demo",
    ("kaleido.testing", "kaleido.settings"): "the plugin loads into every pytest session",
    ("kaleido.testing", "kaleido.embedded"): "the plugin loads into every pytest session",
    ("kaleido.testing", "kaleido.testing.driver"): "the plugin loads into every pytest session",
    ("kaleido.testing", "kaleido.testing.servers"): "the plugin loads into every pytest session",
}


def deferred_imports(modules: dict[str, Module]) -> set[tuple[str, str]]:
    return {
        (m.name, imp.target)
        for m in modules.values()
        for imp in imports(m)
        if imp.runs and not imp.module_level and _within(imp.target, PACKAGES)
    }


def test_deferred_imports_are_counted_and_each_has_a_reason() -> None:
    assert deferred_imports(MODULES) == set(DEFERRED)


# Only the gateways speak to the backends' libraries (and run asyncio, through trio-asyncio):
# the rest of Kaleido sees trio and Kaleido's own exceptions (kaleido.errors).
GATEWAY = "kaleido.gateways"
GATEWAY_ONLY = ("asyncio", "trio_asyncio", "redis", "asyncpg")


def backend_libraries_outside_the_gateways(modules: dict[str, Module]) -> list[str]:
    return [
        _where(m, imp)
        for m in modules.values()
        if not _within(m.name, GATEWAY)
        for imp in imports(m)
        if imp.runs and _within(imp.target, GATEWAY_ONLY)
    ]


def test_only_the_gateways_import_asyncio_redis_and_asyncpg() -> None:
    assert backend_libraries_outside_the_gateways(MODULES) == []


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or not, with the module that imports it."""
    found: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in found and nxt != start:
                found[nxt] = node
                todo.append(nxt)
    return found


# The pytest plugin loads into every pytest session of an environment: never the command line
# nor the HTTP stack, even once its fixtures run.
PLUGIN = "kaleido.testing"
NOT_FOR_THE_PLUGIN = ("kaleido.cli", "kaleido.http", "kaleido.app", "kaleido.workers")


def plugin_reaching_too_far(modules: dict[str, Module]) -> list[str]:
    graph = import_graph(modules)
    found = reachable(graph, PLUGIN)
    return [
        f"{PLUGIN} reaches {name} (imported by {found[name]})"
        for name in sorted(found)
        if _within(name, NOT_FOR_THE_PLUGIN)
    ]


def test_the_testing_plugin_imports_neither_the_cli_nor_the_http_stack() -> None:
    assert reachable(import_graph(MODULES), PLUGIN)  # the walk finds something
    assert plugin_reaching_too_far(MODULES) == []


# The layers, lowest first: a module imports its own layer and those below, never one above.
# Every module belongs to one (the longest matching prefix), so a new module is placed on
# purpose.
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations: values, errors, settings, logs, metrics; no I/O of their own
    (
        "kaleido.errors", "kaleido.failpoints", "kaleido.concurrency", "kaleido.backoff",
        "kaleido.replies", "kaleido.redis_url", "kaleido.media_urls", "kaleido.logs",
        "kaleido.private_files", "kaleido.keys", "kaleido.messages", "kaleido.metrics",
        "kaleido.breaker", "kaleido.secret_settings", "kaleido.setting_values",
        "kaleido.setting_fields",
        "kaleido.settings", "kaleido.supervisor", "kaleido.exit_status", "kaleido.stop_signals",
        "kaleido.ports", "kaleido.dev_token",
    ),
    # the wall: the one place that talks to Redis and PostgreSQL
    ("kaleido.gateways",),
    # the domain: what Kaleido does with the backends
    (
        "kaleido.views", "kaleido.posts", "kaleido.outbox", "kaleido.streams",
        "kaleido.profiles", "kaleido.lock", "kaleido.flagging", "kaleido.migrate",
        "kaleido.migrations", "kaleido.redis_functions", "kaleido.redis_preflight",
        "kaleido.redis_acl", "kaleido.redis_admin", "kaleido.ops",
    ),
    ("actors",),
    (COMPOSITION_ROOT,),
    # what runs a Service: in-process embedding, the HTTP routes, the demo
    ("kaleido.embedded", "kaleido.embedded_posts", "kaleido.http", "kaleido.demo"),
    # processes (one service, the worker supervisor and its workers) and their tooling
    (
        "kaleido.app", "kaleido.workers", "kaleido.commands", "kaleido.devstack",
        "kaleido.dev_access", "kaleido.dev_run", "kaleido.cli_output",
    ),
    # entry points: the command line, the pytest plugin
    (
        "kaleido.cli", "kaleido.cli_parser", "kaleido.completion", "kaleido.__main__",
        "kaleido.testing",
    ),
)  # fmt: skip


# The package itself imports nothing when loaded (each public name loads its module on first
# use), so any module may read `kaleido.__version__`: it sits below everything.
PACKAGE_ROOT = "kaleido"


def layer_of(name: str) -> int | None:
    if name == PACKAGE_ROOT:
        return 0
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if _within(name, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports_going_up(modules: dict[str, Module]) -> list[str]:
    breaches = []
    for m in modules.values():
        own = layer_of(m.name)
        for imp in imports(m):
            target = layer_of(imp.target) if imp.target in modules else None
            if imp.runs and own is not None and target is not None and target > own:
                breaches.append(_where(m, imp) + f" (layer {own} imports layer {target})")
    return breaches


def test_every_module_has_a_layer() -> None:
    assert [name for name in MODULES if layer_of(name) is None] == []


def test_no_module_imports_one_above_it() -> None:
    assert imports_going_up(MODULES) == []


def test_the_new_rules_catch_a_breach() -> None:
    back = "def f():\n    from kaleido.cli import guarded\n"
    both = {**_fake("kaleido.cli", "from kaleido.workers import x\n"),
            **_fake("kaleido.workers", back)}  # fmt: skip
    assert _cycle(import_graph(both)) == ["kaleido.cli", "kaleido.workers", "kaleido.cli"]
    typing_only = "if TYPE_CHECKING:\n    from kaleido.cli import guarded\n"
    quiet = {**both, **_fake("kaleido.workers", typing_only)}
    assert _cycle(import_graph(quiet)) is None
    assert deferred_imports(_fake("kaleido.x", back)) == {("kaleido.x", "kaleido.cli")}
    assert backend_libraries_outside_the_gateways(_fake("kaleido.x", "import redis.asyncio\n"))
    assert not backend_libraries_outside_the_gateways(_fake("kaleido.gateways.x", "import redis\n"))
    plugin = {**_fake(PLUGIN, "def f():\n    import kaleido.x\n"),
              **_fake("kaleido.x", "import kaleido.http\n"),
              **_fake("kaleido.http", "")}  # fmt: skip
    assert plugin_reaching_too_far(plugin) == [
        "kaleido.testing reaches kaleido.http (imported by kaleido.x)"
    ]
    up = {**_fake("kaleido.settings", "def f():\n    from kaleido.posts import check\n"),
          **_fake("kaleido.posts", "")}  # fmt: skip
    assert imports_going_up(up) == [
        "kaleido/settings.py:2 imports kaleido.posts (layer 0 imports layer 2)"
    ]
