"""The documentation stays true: links resolve, the README's listener example works, the reference
tables name every setting and every sandbox verb."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nonstop.config.settings import setting_names
from sandbox.control import VERBS, VIEWS
from sandbox.testing import clean_env
from tests.botprocess import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)  # code is not prose
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", doc.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


def test_the_link_check_notices_a_broken_link(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) [b](https://localhost/x) `[c](code.md)` ![i](img.png)\n", encoding="utf-8")
    assert relative_links(doc) == ["missing.md"]


def fenced_files(doc: Path) -> dict[str, str]:
    """Code blocks whose first line is a '# path/to/file.py' comment, by path."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    return dict(blocks)


def test_the_readme_listener_example_works(tmp_path: Path) -> None:
    files = fenced_files(REPO / "README.md")
    assert set(files) == {
        "listeners/commands/hello.py",
        "listeners/commands/__init__.py",
        "tests/listeners/commands/test_hello.py",
    }
    shutil.copytree(REPO / "listeners", tmp_path / "listeners")  # a copy of the real package, plus the example
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body, encoding="utf-8")
    env = clean_env() | {"PYTHONPATH": f"{tmp_path}{':'}{REPO}"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/listeners/commands/test_hello.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    registered = subprocess.run(
        [sys.executable, "-c", "from unittest.mock import create_autospec; from slack_bolt import App; "
         "from listeners import register_listeners; app = create_autospec(App, instance=True); "
         "register_listeners(app); print(sorted(c.args[0] for c in app.command.call_args_list))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert registered.stdout.strip() == "['/hello', '/nonstop']", registered.stderr


def test_the_configuration_reference_lists_exactly_the_settings_read() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, flags=re.M))
    assert {"SLACK_BOT_TOKEN", "NONSTOP_CONNECTIONS", "HEALTH_PORT"} <= setting_names(), "the names are recorded"
    assert documented == setting_names()


def test_the_sandbox_reference_names_every_verb_and_view() -> None:
    doc = (REPO / "docs" / "sandbox.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)? \|", doc, flags=re.M))
    names = {name for pair in listed for name in pair if name}
    assert set(VERBS) | set(VIEWS) <= names, sorted((set(VERBS) | set(VIEWS)) - names)
