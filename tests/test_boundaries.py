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
