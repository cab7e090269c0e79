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
from tests.test_demo import demo

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


def copy_of_the_repository(tmp_path: Path) -> Path:
    """The checkout as a user's clone would be, with this run's virtualenv as its `.venv`."""
    copy = tmp_path / "nonstop"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".*_cache", "build", "dist", "*.egg-info")
    shutil.copytree(REPO, copy, ignore=ignore)
    (copy / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return copy


def test_the_readme_listener_tutorial_ends_green(tmp_path: Path) -> None:
    """Every step of "Add your own listener" in a copy of the repository, then exactly the commands it gives."""
    tutorial = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Add your own listener\n")[1]
    tutorial = tutorial.split("\n## ")[0]
    copy = copy_of_the_repository(tmp_path)
    files = dict(re.findall(r"```python\n# (\S+\.py)\n(.*?)```", tutorial, flags=re.S))
    assert set(files) == {
        "listeners/commands/hello.py",
        "listeners/commands/__init__.py",
        "tests/listeners/commands/test_hello.py",
    }
    for path, body in files.items():
        (copy / path).write_text(body, encoding="utf-8")
    [declaration] = re.findall(r"```yaml\n(.*?)```", tutorial, flags=re.S)
    manifest = (copy / "manifest.yml").read_text(encoding="utf-8")
    last_command = re.search(r"  slash_commands:\n(?:    .*\n)+", manifest)
    assert last_command is not None, "manifest.yml has a features.slash_commands list to add to"
    (copy / "manifest.yml").write_text(
        manifest[: last_command.end()] + declaration + manifest[last_command.end() :], encoding="utf-8"
    )
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PYTHON", "SLACK_", "NONSTOP_"))}
    [command] = re.findall(r"Then `([^`]+)`", tutorial)
    tests = subprocess.run(
        command, shell=True, cwd=copy, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tests.stdout)
    assert passed is not None
    assert int(passed.group(1)) > 20, "the directories ran, not only the new test"
    assert "failed" not in tests.stdout
    [demo_command, typed] = re.findall(r"`([^`]+)`, then `([^`]+)`", tutorial)[0]
    with demo(copy, demo_command) as session:
        session.type(typed)
        session.expect(r"Hello, world!")
        assert session.quit() == 0, session.output


def test_ci_runs_the_test_command_the_readme_and_the_development_guide_give() -> None:
    [command] = re.findall(r"&& (\.venv/bin/python -m pytest[^\n]*)", (REPO / "README.md").read_text(encoding="utf-8"))
    ci = [line for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert ci[-1] == command, "the last step of .ci/run is the README's test command, verbatim"
    guide = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(command)} +#", guide, flags=re.M), "docs/development.md shows the same command"


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
