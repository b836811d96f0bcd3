"""The module structure holds: who may import whom, no import cycles, small documented modules.

Imports are read with `ast`, not by importing: a rule broken in a module no test imports still
fails here. "Module level" means what runs at import time: top-level statements and class
bodies, including `if`/`try`/`with` blocks, but not `if TYPE_CHECKING:` blocks nor function
bodies (imports deferred until called).
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


def _statements(body: list[ast.stmt], module_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement, with whether it runs when the module is imported."""
    for stmt in body:
        yield stmt, module_level
        if isinstance(stmt, ast.If):
            yield from _statements(stmt.body, module_level and not _is_type_checking(stmt.test))
            yield from _statements(stmt.orelse, module_level)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(stmt.body, False)
        elif isinstance(stmt, ast.ClassDef):
            yield from _statements(stmt.body, module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(stmt, field, None)
                if isinstance(children, list):
                    for child in children:
                        if isinstance(child, ast.ExceptHandler | ast.match_case):
                            yield from _statements(child.body, module_level)
                        elif isinstance(child, ast.stmt):
                            yield from _statements([child], module_level)


def imports(module: Module) -> list[Import]:
    found = []
    for stmt, module_level in _statements(module.tree.body, True):
        if isinstance(stmt, ast.Import):
            found += [Import(alias.name, stmt.lineno, module_level) for alias in stmt.names]
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
                found.append(Import(base, stmt.lineno, module_level))
            found += [Import(sub, stmt.lineno, module_level) for sub in submodules]
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


def test_no_import_cycles_at_module_level() -> None:
    graph = {
        m.name: {
            imp.target
            for imp in imports(m)
            if imp.module_level and imp.target in MODULES and imp.target != m.name
        }
        for m in MODULES.values()
    }
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
