"""The distribution: a wheel built from this checkout holds the runtime and the sandbox (nothing of the bot),
declares its dependencies as ranges around the app's pins with Redis as an extra, and works from outside the
repository once installed, with or without that extra.

The wheel and the virtualenv it is installed into: `tests/installed.py`.
"""

from __future__ import annotations

import re
import signal
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from sandbox import Sandbox
from tests.botprocess import bot_env, run_bot
from tests.installed import REPO, run, venv, wheel

__all__ = ["venv", "wheel"]  # fixtures

PACKAGES = ("nonstop", "sandbox")  # the import names the wheel ships


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


def test_the_python_example_of_docs_sandbox_md_runs_from_anywhere_against_a_used_sandbox(
    venv: Path, tmp_path: Path, sandbox: Sandbox
) -> None:
    """The example, from a directory outside the repository with the package installed, against a sandbox that
    has seen a bot come and go, a reset, and traffic: not a fresh one."""
    doc = (REPO / "docs" / "sandbox.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(from sandbox\.remote import RemoteSandbox\n.*?)```", doc, flags=re.S)
    assert "http://127.0.0.1:3102/_sandbox/" in code
    (tmp_path / "example.py").write_text(code.replace("http://127.0.0.1:3102/_sandbox/", sandbox.control_url))
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1")) as earlier:
        sandbox.wait_for_connections(1)
        earlier.signal(signal.SIGTERM)
        earlier.wait_exit(30)
    with run_bot(bot_env(sandbox)):
        sandbox.wait_for_connections(2)
        sandbox.reset()
        sandbox.wait_for_message(thread_ts=sandbox.mention("ping").ts)
        assert "Nonstop status" in run([str(venv / "bin" / "python"), "example.py"], cwd=tmp_path)
