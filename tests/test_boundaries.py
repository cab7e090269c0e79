"""The layering rules: the runtime never imports the bot's listeners or the sandbox, and the sandbox
(the instrument every claim rests on) never imports the bot it tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.botprocess import REPO

FORBIDDEN = {
    "nonstop": ("listeners", "sandbox", "app", "demo"),
    "sandbox": ("nonstop", "listeners", "app", "demo"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_to_its_layer(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources found under {package}/"
    offending = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[package]
    }
    assert offending == set()


def test_the_check_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom listeners.replies import home_view\n", encoding="utf-8")
    assert "listeners.replies" in imported_modules(module)


# -- the layout (issue 20): no import cycle, modules of a readable size, backends known in one place ---------


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, TYPE_CHECKING imports included (a cycle there
    still ties two modules into one). `from pkg import name` names pkg.name when that is a module."""
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != root.name:
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in files else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == root.name}
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every cycle, each once (as the rotation that starts at its smallest module), by Tarjan's strongly
    connected components: a component of more than one module holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["nonstop", "sandbox"])
def test_no_import_cycle(package: str) -> None:
    graph = import_graph(REPO / package)
    assert len(graph) > 5
    assert cycles(graph) == set()


def test_the_cycle_check_finds_one(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert cycles(import_graph(root)) == {("pkg.a", "pkg.sub.b")}


RUNTIME_MODULE_LINES = 400
SUPERVISOR_LINES = 300


def test_runtime_modules_stay_readable() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / "nonstop").rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > RUNTIME_MODULE_LINES} == {}
    assert sizes["nonstop/supervisor.py"] <= SUPERVISOR_LINES


LEDGER_BACKENDS = {"MemoryLedger", "SqliteLedger", "RedisLedger"}


def test_only_the_factory_asks_which_ledger_backend_it_has() -> None:
    asking = set()
    for path in (REPO / "nonstop").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if named & LEDGER_BACKENDS:
                    asking.add(str(path.relative_to(REPO)))
    assert asking <= {"nonstop/backends.py"}
