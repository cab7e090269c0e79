"""The distribution: a wheel built from this checkout holds the runtime and the sandbox (nothing of the bot),
declares its dependencies as ranges around the app's pins with Redis as an extra, and works from outside the
repository once installed, with or without that extra.

The wheel is built with the real backend (setuptools, pinned in requirements-dev.txt) without build isolation,
so no network is needed; it is installed with `--no-deps` into a fresh virtualenv whose dependencies are this
test run's own (a .pth file appends its site-packages), and run from a directory outside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nonstop", "sandbox")  # the import names the wheel ships


def run(command: list[str], cwd: Path | None = None) -> str:
    """Run `command` outside the repository's import path; its stdout, or a failure with everything it said."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{command[:4]} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # setuptools writes build/ and *.egg-info into the tree it builds: build a copy, never the checkout.
    source = tmp_path_factory.mktemp("source") / "nonstop"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".*_cache", "build", "dist", "*.egg-info")
    shutil.copytree(REPO, source, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out),
         str(source)])  # fmt: skip
    [whl] = out.glob("nonstop-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; its other dependencies are this run's (appended last)."""
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    python = str(root / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", str(wheel)])
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    (Path(site) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def dist_info(wheel: Path, name: str) -> str:
    return zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/{name}").decode()


def normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def test_the_wheel_holds_the_runtime_and_the_sandbox_and_nothing_of_the_bot(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {*PACKAGES, wheel.name.split("-py3")[0] + ".dist-info"}
    for package in PACKAGES:  # every sub-package of the checkout, whatever its layout, and its type marker
        for init in (REPO / package).rglob("__init__.py"):
            assert init.relative_to(REPO).as_posix() in names
        assert f"{package}/py.typed" in names
    assert "nonstop-sandbox = sandbox.__main__:main" in dist_info(wheel, "entry_points.txt")


def test_dependencies_are_ranges_around_the_apps_pins_and_redis_is_an_extra(wheel: Path):
    declared = [
        Requirement(line.split(":", 1)[1].strip())
        for line in dist_info(wheel, "METADATA").splitlines()
        if line.startswith("Requires-Dist:")
    ]
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, exact, version = requirement.partition("==")
            assert exact, f"requirements.txt keeps the app's exact pins: {line!r}"
            pins[normalized(name)] = version
    runtime = {normalized(r.name): r for r in declared if r.marker is None}
    extras = {normalized(r.name): r for r in declared if r.marker is not None}
    assert set(runtime) == set(pins) - {"python-dotenv", "redis"}  # python-dotenv reads the app's .env: app.py only
    assert str(extras["redis"].marker) == 'extra == "redis"'
    for name, requirement in [*runtime.items(), ("redis", extras["redis"])]:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, f"{name}{requirement.specifier} is not a range"
        assert requirement.specifier.contains(pins[name]), f"{name}{requirement.specifier} excludes the pin"


def test_the_installed_package_works_from_outside_the_repository(venv: Path, tmp_path: Path):
    code = "from nonstop import SupervisedSocketModeHandler\nimport nonstop, sandbox\nprint(nonstop.__file__)\n"
    code += "print(sandbox.__file__)"
    files = run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).split()
    assert len(files) == 2
    assert all(Path(file).is_relative_to(venv) for file in files), files
    assert "usage:" in run([str(venv / "bin" / "nonstop-sandbox"), "--help"], cwd=tmp_path)


def test_without_the_redis_extra_nonstop_imports_and_a_redis_ledger_is_refused_in_one_line(venv: Path, tmp_path: Path):
    code = (
        "import asyncio, sys\n"
        "sys.modules['redis'] = None  # as if the extra were not installed: any import of redis fails\n"
        "from nonstop import SupervisedSocketModeHandler\n"
        "from nonstop.backends import open_backends\n"
        "from nonstop.errors import ConfigError\n"
        "for url in ('sqlite:///x.sqlite3', 'rediss://h:6380/0'):\n"
        "    try:\n"
        "        asyncio.run(open_backends(url, ttl_s=60, wish=1, lease_s=10))\n"
        "        print('opened', url)\n"
        "    except ConfigError as e:\n"
        "        print(e)\n"
    )
    local, redis = run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).splitlines()
    assert local == "opened sqlite:///x.sqlite3"
    assert redis == "NONSTOP_LEDGER=rediss://… needs the redis package: pip install 'nonstop[redis]'"


def test_a_users_own_test_uses_the_sandbox_fixture_as_docs_sandbox_md_shows(venv: Path, tmp_path: Path):
    doc = (REPO / "docs" / "sandbox.md").read_text(encoding="utf-8")
    [(path, code)] = re.findall(r"```python\n# (tests/test_my_bot\.py)\n(.*?)```", doc, flags=re.S)
    (tmp_path / path).parent.mkdir()
    (tmp_path / path).write_text(code)
    pytest_command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    assert "1 passed" in run([*pytest_command, path], cwd=tmp_path)
