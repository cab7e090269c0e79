"""The sandbox's modules import each other one way: no import cycle (issue 20), TYPE_CHECKING imports
included, since a cycle there still ties two modules into one."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.botprocess import REPO


def sandbox_imports(root: Path) -> dict[str, set[str]]:
    """module -> the sandbox modules it imports (`from sandbox import payloads` names sandbox.payloads)."""
    modules = {p.stem for p in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        name = "sandbox" if path.stem == "__init__" else f"sandbox.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "sandbox":
                deps |= {f"sandbox.{a.name}" if a.name in modules else "sandbox" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sandbox."):
                deps.add(str(node.module))
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("sandbox.")}
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                cycle = path[path.index(dep) :]
                first = cycle.index(min(cycle))
                found.add(tuple(cycle[first:] + cycle[:first]))
            elif dep in graph:
                walk(dep, [*path, dep])

    for start in graph:
        walk(start, [start])
    return found


def test_the_sandbox_has_no_import_cycle() -> None:
    graph = sandbox_imports(REPO / "sandbox")
    assert {"sandbox.server", "sandbox.control"} <= set(graph)
    assert cycles(graph) == set()


def test_the_check_finds_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from sandbox.b import x\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sandbox import a\n")
    assert cycles(sandbox_imports(tmp_path)) == {("sandbox.a", "sandbox.b")}
