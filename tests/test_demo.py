"""`python app.py --sandbox`: the newcomer's one command, typed into like a person at the keyboard:
type a line, wait to see the answer, type the next."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.testing import clean_env
from tests.botprocess import REPO


class Demo:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.seen = 0  # expect() looks at output after the previous match
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 30) -> int:
        """Wait for a line matching `pattern` after the last match; return its index."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: (
                    next((i for i in range(self.seen, len(self.lines)) if regex.search(self.lines[i])), None)
                    is not None
                    or "<EOF>" in self.lines[self.seen :]
                ),
                timeout=timeout,
            )
            index = next((i for i in range(self.seen, len(self.lines)) if regex.search(self.lines[i])), None)
            if not found or index is None:
                raise AssertionError(f"no line matching {pattern!r} in the demo's output:\n" + "\n".join(self.lines))
            self.seen = index + 1
            return index

    def quit(self, timeout: float = 60) -> int:
        self.type(":quit")
        code = self.proc.wait(timeout)
        self._reader.join(timeout=10)
        return code


@contextmanager
def demo(where: Path, command: str | None = None) -> Iterator[Demo]:
    """The demo, run in `where` (an empty directory: no .env, no tokens; the demo needs neither), or `command`
    (a shell command line, as the README gives it) run in `where`, a copy of the repository."""
    env = {k: v for k, v in clean_env().items() if not k.startswith(("SLACK_", "NONSTOP_"))}
    proc = subprocess.Popen(
        command or [sys.executable, str(REPO / "app.py"), "--sandbox"],
        shell=command is not None,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=where,
        env=env | {"HEALTH_PORT": "0"} | ({} if command else {"PYTHONPATH": str(REPO)}),
    )
    try:
        session = Demo(proc)
        session.expect(r"Nonstop is connected to a local Slack")
        yield session
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_sandbox_demo_answers_and_recovers_from_faults(tmp_path: Path) -> None:
    with demo(tmp_path) as d:
        d.type("@Nonstop ping")
        d.expect(r"    ↳ Nonstop: pong · your message reached me in \d+ ms")
        d.type("/nonstop ping")
        d.expect(r"Nonstop \(only you\): pong")
        d.type(":drop")
        d.expect(r"1006 abnormal closure")
        d.expect(r"connection #\d: connected in")
        d.expect(r"connection #\d: connected in")
        d.type("@Nonstop status")
        d.expect(r"↳ Nonstop: Nonstop status: connected$")  # the heading, without mrkdwn's asterisks
        reconnects = d.lines[d.expect(r"^ +Reconnects: 2 \(reset 2\)$")]
        last_drop = d.lines[d.expect(r"^ +Last drop: .*1006 abnormal closure")]
        indent = len(reconnects) - len(reconnects.lstrip())
        assert len(last_drop) - len(last_drop.lstrip()) == indent, "'Last drop' lines up with the other facts"
        d.type(":home")
        d.expect(r"Nonstop Home tab \(updated\): Nonstop status: connected")
        d.expect(r"\[Check connection\]")
        d.type(":click")
        d.expect(r"you clicked \[Check connection\]")
        d.expect(r"Last check: .*Web API answered in \d+ ms \(auth.test\)")
        d.type("@Nonstop help")
        d.expect(r"My Home tab shows the same health, live, with a Check connection button")
        d.type(":silence")
        d.expect(r"silenced 2 connection")
        assert d.quit() == 0, d.output
    assert "Traceback" not in d.output
    assert "*" not in d.output, "no literal mrkdwn markers in the chat"


def test_the_demo_says_when_slack_gave_up_and_never_blocks_input(tmp_path: Path) -> None:
    with demo(tmp_path) as d:
        d.type(":outage 60")
        d.expect(r"Web API down \(connection refused\) for 60 s")
        d.type("@Nonstop ping")
        d.type(":conns")
        answered = d.expect(r"c1 +closed")  # typed after the mention, answered before Slack is done with it
        gave_up = d.expect(r"\(Slack gave up on your message after 4 tries: no connection of the bot acknowledged it")
        assert answered < gave_up
        d.type(":end")
        d.expect(r"outage over")  # then the links and catch-up's scan come back in either order
        found = d.expect(r"catch-up .*: 1 mention\(s\) Slack never delivered now answered")  # found in the history
        assert gave_up < found
        d.expect(r"↳ Nonstop: pong")
        assert d.quit() == 0, d.output
    assert d.output.count("↳ Nonstop: pong") == 1, "answered once, though Slack gave up on it"
    assert "no reply yet" not in d.output


def test_the_demo_exits_with_the_bots_exit_code(tmp_path: Path) -> None:
    with demo(tmp_path) as d:
        d.type(":revoke")
        d.expect(r"the bot has stopped \(exit code 78\)")
        assert d.quit() == 78, d.output
