"""Zero loss (issue 9): the ledger, backpressure and the command lane, checked on the real bot process.

Each test drives `python app.py` against the sandbox over 127.0.0.1 and waits on observed events. A
restart reuses the first process's working directory, so it finds the same SQLite ledger, as a bot
restarted by systemd or Docker finds its state directory or volume.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.records import Delivery
from sandbox.testing import TEST_CONFIG
from tests.botprocess import bot_env, run_bot
from tests.integration.answers import every_one_answered


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # A longer ack deadline than the other suites: a restart (stop, start, sign in, connect) must fit
    # between an event's first attempt and Slack's first retry of it.
    return TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "ack_deadline_s": 6.0})


def live(sb: Sandbox, n: int) -> None:
    sb.wait_until(lambda: len([c for c in sb.connections(live_only=True) if c.state == "live"]) >= n, what="live")


def all_acked(sb: Sandbox, ds: list[Delivery], timeout: float = 20) -> None:
    sb.wait_until(lambda: all(sb.delivery(d).acked_at is not None for d in ds), timeout=timeout, what="all acked")


def test_sigkill_loses_nothing_acked_and_doubles_only_what_was_mid_way(sandbox: Sandbox, tmp_path: Path) -> None:
    env = bot_env(sandbox, NONSTOP_HANDLER_THREADS="8")
    with run_bot(env, workdir=tmp_path) as bot:
        live(sandbox, 2)
        sandbox.slow_api(2.0, ["chat.postMessage"])
        ds = [sandbox.mention(f"ping {i}") for i in range(30)]
        all_acked(sandbox, ds)  # acked: Slack will never send these again
        sandbox.wait_until(lambda: len(sandbox.calls("chat.postMessage")) >= 8, what="8 listeners mid-way")
        bot.proc.kill()
        bot.proc.wait(10)
        mid_way = {c.params.get("thread_ts") for c in sandbox.calls("chat.postMessage")}
    sandbox.slow_api(0)
    with run_bot(env, workdir=tmp_path) as again:
        again.wait_for_log(r"running \d+ event\(s\) again that were acked but never finished")
        counts = every_one_answered(sandbox, ds)
    doubled = {d.ts for d in ds if counts[d.key] > 1}
    assert all(n <= 2 for n in counts.values()), counts
    assert doubled <= mid_way, "only a listener cut off mid-way may run twice"
    assert len(doubled) <= 8, "at most one per handler thread"


def test_sigterm_past_the_drain_deadline_leaves_the_rest_for_the_next_start(sandbox: Sandbox, tmp_path: Path) -> None:
    env = bot_env(sandbox, NONSTOP_HANDLER_THREADS="8", NONSTOP_DRAIN_TIMEOUT="2")
    with run_bot(env, workdir=tmp_path) as bot:
        live(sandbox, 2)
        sandbox.slow_api(2.0, ["chat.postMessage"])
        ds = [sandbox.mention(f"ping {i}") for i in range(30)]
        all_acked(sandbox, ds)
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=30) == 0
        line = bot.wait_for_log(r"acked event\(s\) did not finish; they stay in the ledger")[0]
        # Listeners start once envelopes stop arriving: the 8 under way (if they had started) may finish;
        # the rest never started.
        assert re.search(r"\b(2\d|30) acked event", line), line
    sandbox.slow_api(0)
    with run_bot(env, workdir=tmp_path):
        counts = every_one_answered(sandbox, ds)
    assert all(n <= 2 for n in counts.values()), counts


def test_a_retry_of_an_event_handled_before_a_restart_is_not_handled_again(sandbox: Sandbox, tmp_path: Path) -> None:
    env = bot_env(sandbox)
    with run_bot(env, workdir=tmp_path) as bot:
        live(sandbox, 2)
        sandbox.lose_acks(1)  # the bot's ack never reaches Slack, which will retry the event
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=15) == 0
        assert sandbox.delivery(d).acked_at is None, "the retry must reach the restarted bot, not this one"
    with run_bot(env, workdir=tmp_path) as again:
        record = sandbox.wait_for_outcome(d, ("acked",), timeout=30)
        assert record.attempts[-1].retry_attempt >= 1
        event_id = sandbox.delivery(d).event_id
        again.wait_for_log(rf"suppressed a duplicate delivery of {event_id}\b")
    assert len(sandbox.replies_to(d)) == 1


def test_a_slash_command_is_answered_while_every_event_listener_is_stuck(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_HANDLER_THREADS="12")) as bot:
        live(sandbox, 2)
        sandbox.slow_api(8.0, ["chat.postMessage"])
        # In 12 channels: the answer path keeps at most a burst (4) of one channel's posts in the air.
        ds = [sandbox.mention(f"ping {i}", channel=f"C0STUCK{i:03d}") for i in range(12)]
        sandbox.wait_until(lambda: len(sandbox.calls("chat.postMessage")) >= 12, what="12 listeners stuck")
        cmd = sandbox.slash_command("ping")
        ack = sandbox.wait_for_ack(cmd, timeout=10)
        assert "pong" in str(ack.payload), ack
        assert not any(sandbox.replies_to(d) for d in ds), "the command did not wait for the stuck listeners"
        assert "Traceback" not in bot.log


def test_listeners_waiting_on_slack_run_side_by_side(sandbox: Sandbox) -> None:
    """30 mentions in 30 channels, a 2 s chat.postMessage each: all 30 requests are out before the first answer.
    (In one channel the answer path keeps at most a burst of posts in the air: Slack allows about one a second.)"""
    with run_bot(bot_env(sandbox)):
        live(sandbox, 2)
        sandbox.slow_api(2.0, ["chat.postMessage"])
        ds = [sandbox.mention(f"ping {i}", channel=f"C0SIDE{i:03d}") for i in range(30)]
        every_one_answered(sandbox, ds)
        posts = sandbox.calls("chat.postMessage")
        first_answer = min(c.answered_at for c in posts if c.answered_at is not None)
        assert sum(1 for c in posts if c.at < first_answer) == 30
