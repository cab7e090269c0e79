"""`python app.py --sandbox`: the newcomer's one command, driven through a pipe like a person at the keyboard."""

from __future__ import annotations

import subprocess
import sys

from sandbox.testing import clean_env
from tests.botprocess import REPO


def test_sandbox_demo_answers_and_recovers_from_faults(tmp_path) -> None:
    script = "\n".join(["@Nonstop ping", "/nonstop ping", ":drop", "@Nonstop status", ":silence", ":quit", ""])
    env = {k: v for k, v in clean_env().items() if not k.startswith(("SLACK_", "NONSTOP_"))}
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--sandbox"],
        input=script,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,  # no .env, no tokens: the demo needs neither
        env=env | {"PYTHONPATH": str(REPO), "HEALTH_PORT": "0"},
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in out + result.stderr
    assert out.count("pong") >= 2, out  # the mention (in its thread) and the ephemeral slash reply
    assert "Nonstop (only you): pong" in out
    assert "1006 abnormal closure" in out, "the drop is shown, explained"
    assert "Reconnects: 2 (reset 2)" in out, "status shows the reconnects the :drop caused"
    assert "silenced" in out
