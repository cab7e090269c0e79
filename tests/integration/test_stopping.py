"""What a stop, or a second process of the same app, costs the user: nothing (issue 17, item 8).

The real bot (`python app.py`) against the sandbox: a slash command that arrives while the bot drains is
acked with its answer (Slack never redelivers a command, and the links are still open), and a second
process that starts beside a running one (a blue/green deploy, without Redis) gets its links: spare links
give way to connections the bot does not own.
"""

from __future__ import annotations

import signal
from pathlib import Path

from sandbox import Sandbox
from tests.botprocess import bot_env, run_bot
from tests.integration.test_supervisor import wait_live


def test_a_command_during_the_drain_is_answered_in_its_ack(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_DRAIN_TIMEOUT="10")) as bot:
        wait_live(sandbox, 2)
        sandbox.slow_api(3.0, methods=["chat.postMessage"])  # the mentions' replies are in flight for 3 s
        mentions = [sandbox.mention("ping") for _ in range(3)]
        sandbox.wait_until(lambda: len(sandbox.calls("chat.postMessage")) >= 3, timeout=10, what="replies under way")
        bot.signal(signal.SIGTERM)
        bot.wait_for_log(r"stopping gracefully")
        command = sandbox.slash_command("ping")
        ack = sandbox.wait_for_ack(command, timeout=10)
        assert not ack.late, "acked within Slack's 3 s"
        assert ack.payload is not None
        assert "pong" in str(ack.payload.get("text")), ack.payload
        assert sandbox.delivery(command).outcome == "acked"
        assert bot.wait_exit(timeout=20) == 0
        for d in mentions:
            assert [c.status for c in sandbox.replies_to(d)] == [200], "the mentions in flight were answered"


def test_a_second_process_beside_a_running_one_gets_its_links(sandbox: Sandbox, tmp_path: Path) -> None:
    """Blue/green without Redis: each process holds its two links and no spares for the other's, so
    neither runs into Slack's limit of 10 (`too_many_websockets`)."""
    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    with run_bot(bot_env(sandbox), workdir=tmp_path / "blue") as blue:
        wait_live(sandbox, 2)
        with run_bot(bot_env(sandbox), workdir=tmp_path / "green") as green:
            green.wait_for_log(r"connection #2: connected", timeout=20)
            sandbox.wait_until(lambda: len(sandbox.connections(live_only=True)) == 4, timeout=20, what="2 + 2")
            # A while later (spares are rebalanced when a hello is counted), still 2 + 2, none refused.
            marker = sandbox.mention("ping")
            sandbox.wait_until(lambda: sandbox.replies_to(marker), timeout=10, what="a mention answered")
            assert len(sandbox.connections(live_only=True)) == 4
            for bot in (blue, green):
                assert "too_many_websockets" not in bot.log
                assert "spare #" not in bot.log, "another process's links are no dead ones of this one"
            blue.signal(signal.SIGTERM)
            assert blue.wait_exit(timeout=20) == 0
            after = sandbox.mention("ping")
            sandbox.wait_until(lambda: sandbox.replies_to(after), timeout=10, what="green answers alone")
