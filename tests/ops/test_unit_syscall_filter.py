"""The shipped systemd unit's syscall filter, applied for real: the bot runs under it and answers.

`seccomp_exec.py` (run by Debian's python3, which has libseccomp's bindings) loads the filter that
`deploy/nonstop.service` declares and then execs the bot under the project's interpreter.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.botprocess import REPO, bot_env
from tests.tools import require

UNIT = REPO / "deploy" / "nonstop.service"
LAUNCHER = Path(__file__).with_name("seccomp_exec.py")
DEBIAN_PYTHON = "/usr/bin/python3"


def seccomp_available() -> bool:
    if shutil.which("systemd-analyze") is None or not Path(DEBIAN_PYTHON).exists():
        return False
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import seccomp"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture
def confined() -> None:
    require(seccomp_available(), "systemd-analyze and Debian's python3-seccomp (apt-get install python3-seccomp)")


def run_confined(unit: Path, env: dict[str, str], workdir: str, log: Path) -> subprocess.Popen[bytes]:
    command = [DEBIAN_PYTHON, str(LAUNCHER), str(unit), "--", sys.executable, str(REPO / "app.py")]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=workdir, env=env | {"PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def test_the_filter_denies_what_the_unit_says(confined: None) -> None:
    """The launcher really confines: a priority change (in @resources) is refused with EPERM."""
    probe = "import os, sys\ntry:\n    os.nice(1)\nexcept PermissionError:\n    sys.exit(42)\n"
    result = subprocess.run(
        [DEBIAN_PYTHON, str(LAUNCHER), str(UNIT), "--", sys.executable, "-c", probe], capture_output=True, check=False
    )
    assert result.returncode == 42, result.stderr


def test_the_bot_answers_under_the_units_syscall_filter(confined: None, sandbox: Sandbox) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        log = Path(workdir) / "bot.log"
        # NONSTOP_HANDLER_NICE is app.py's default (10): the handler threads do try setpriority().
        proc = run_confined(UNIT, bot_env(sandbox), workdir, log)
        try:
            sandbox.wait_for_connections(2, timeout=30)
            for text in ("ping", "status"):
                d = sandbox.mention(text)
                sandbox.wait_for_message(thread_ts=d.ts, timeout=30)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert "Traceback" not in log.read_text()
