"""Run the real bot (`python app.py`) as a subprocess against a sandbox, and watch what it says."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import Sandbox
from sandbox.testing import clean_env

REPO = Path(__file__).resolve().parents[1]

FAST = {
    # Test-speed timers; the behaviour is the same as with the production defaults.
    "NONSTOP_PING_INTERVAL": "0.5",
    "NONSTOP_STALE_AFTER": "2.5",
    "NONSTOP_HEALTHY_AFTER": "2",
    "NONSTOP_BACKOFF_BASE": "0.2",
    "NONSTOP_BACKOFF_CAP": "2",
    "NONSTOP_CONNECT_TIMEOUT": "3",
    "NONSTOP_DRAIN_TIMEOUT": "5",
    "NONSTOP_SPARE_CALM": "2",  # spares wait this long after a silence (production: 10 s)
    "HEALTH_PORT": "0",
    "LOG_LEVEL": "INFO",
}


class BotProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10, count: int = 1) -> list[str]:
        """Wait until `pattern` (a regex) matches at least `count` log lines; return the matching lines."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            lines = [line for line in self.log.splitlines() if regex.search(line)]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {count}x {pattern!r} in the bot's log within {timeout} s:\n{self.log[-3000:]}")
            if self.proc.poll() is not None and len(lines) < count:
                raise AssertionError(f"bot exited with {self.proc.returncode} before {pattern!r}:\n{self.log[-3000:]}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # say where it stands: the log's tail is the only witness
            tail = self.log[-4000:]
            raise TimeoutError(f"the bot was still running {timeout} s later; its log ends:\n{tail}") from None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    @property
    def pid(self) -> int:
        return self.proc.pid


def bot_env(sb: Sandbox, **overrides: str) -> dict[str, str]:
    env = (
        clean_env()
        | FAST
        | {
            "SLACK_BOT_TOKEN": sb.bot_token,
            "SLACK_APP_TOKEN": sb.app_token,
            "SLACK_API_URL": sb.api_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    tls = getattr(sb, "tls", None)
    if tls is not None:  # a sandbox serving https:// and wss://: trust its throwaway CA (docs/network.md)
        env["SSL_CERT_FILE"] = tls.ca_file
    return env | overrides


@contextmanager
def run_bot(
    env: dict[str, str], args: tuple[str, ...] = (), workdir: Path | None = None, command: list[str] | None = None
) -> Iterator[BotProcess]:
    """Start `python app.py` in a temporary directory (so no stray .env is read, and the ledger is its
    own) or in `workdir` (a restart that finds the same ledger); always kill it afterwards. `command`: another
    bot instead (a user's app), run with `env` as it is, the repository not on its import path."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log_path = Path(workdir) / f"bot-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                command or [sys.executable, str(REPO / "app.py"), *args],
                cwd=workdir,
                env=env if command else env | {"PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                yield BotProcess(proc, log_path)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)


def run_once(env: dict[str, str], timeout: float = 20, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the bot to completion (for start-up failures); cwd is an empty temp dir."""
    with tempfile.TemporaryDirectory() as workdir:
        return subprocess.run(
            [sys.executable, str(REPO / "app.py"), *args],
            cwd=workdir,
            env=env | {"PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def minimal_env(**values: str) -> dict[str, str]:
    """The environment without any Slack/Nonstop settings, plus `values`."""
    keep = {k: v for k, v in clean_env().items() if not k.startswith(("SLACK_", "NONSTOP_", "HEALTH_", "LOG_"))}
    return keep | {"PYTHONUNBUFFERED": "1", "HEALTH_PORT": "0"} | values
