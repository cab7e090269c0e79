"""A wheel built from this checkout, installed into a fresh virtualenv, for tests that use the package from
outside the repository as a user would (`tests/test_package.py`, `tests/integration/test_dropin.py`).

The wheel is built with the real backend (setuptools, pinned in requirements-dev.txt) without build isolation,
so no network is needed; it is installed with `--no-deps` into a fresh virtualenv whose dependencies are this
test run's own (a .pth file appends its site-packages), and run from a directory outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "outside_env", "run", "venv", "wheel"]


def outside_env() -> dict[str, str]:
    """This environment without anything that would put the repository on the import path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(command: list[str], cwd: Path | None = None) -> str:
    """Run `command` outside the repository's import path; its stdout, or a failure with everything it said."""
    done = subprocess.run(command, cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=300, check=False)
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
