"""The answer path (issue 17) on the real bot: `python app.py` against the sandbox, with Slack's rate limits
and its bad moments switched on. Every wait is on an observed event, with a deadline.

The benchmark (bench/, `--only answers`) runs the full-size scenarios (40 mentions at the posting limit,
60 with every 4th post failing, the timings); these are the same scenarios at a size CI can afford.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from nonstop.outbound.limits import POST_MESSAGE
from sandbox import Sandbox, SandboxConfig
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES
from sandbox.records import Delivery
from sandbox.testing import TEST_CONFIG
from tests.botprocess import BotProcess, bot_env, run_bot
from tests.integration.test_cluster import live_links, replicas
from tests.ops.test_health_integration import Probe, free_port
from tests.redisserver import RedisServer

SORRY = "Sorry, something went wrong"
WITH_HISTORY = [*BOT_SCOPES.split(","), *HISTORY_SCOPES]


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # A restart (stop, start, sign in, connect) must fit between an event's first attempt and Slack's retry.
    return TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "ack_deadline_s": 6.0})


def answers(sb: Sandbox, ds: list[Delivery]) -> Counter[str]:
    """How many posts Slack holds in each delivery's thread (posts whose answer was lost included)."""
    per_thread = Counter(c.params.get("thread_ts") for c in sb.bot_messages())
    return Counter({d.key: per_thread[d.ts] for d in ds})


def all_answered(sb: Sandbox, ds: list[Delivery], timeout: float = 90) -> Counter[str]:
    sb.wait_until(lambda: all(n >= 1 for n in answers(sb, ds).values()), timeout=timeout, what="every one answered")
    return answers(sb, ds)


def apologies(sb: Sandbox) -> int:
    return sum(1 for c in sb.bot_messages() if SORRY in str(c.params.get("text")))


def ready(sb: Sandbox, bot: BotProcess) -> None:
    bot.wait_for_log(r"connection #2: connected")


def test_a_burst_at_the_posting_limit_is_answered_in_full_and_other_channels_are_not_held_up(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limits(on=True)
    with run_bot(bot_env(sandbox), workdir=tmp_path) as bot:
        ready(sandbox, bot)
        busy = sandbox.mentions([f"ping {i}" for i in range(16)])
        sandbox.wait_until(lambda: answers(sandbox, busy).total() >= 5, timeout=30, what="the busy channel's burst")
        elsewhere = [sandbox.mention(f"ping elsewhere {i}", channel=f"C0ELSE{i:03d}") for i in range(5)]
        done_elsewhere = all_answered(sandbox, elsewhere, timeout=30)
        owed = 16 - sum(1 for n in answers(sandbox, busy).values() if n)
        counts = all_answered(sandbox, busy)
    assert owed > 0, "the other channels were answered while the busy one still owed answers"
    assert set(counts.values()) == {1}, "every one answered, none twice"
    assert set(done_elsewhere.values()) == {1}
    assert apologies(sandbox) == 0
    ratelimited = [c for c in sandbox.calls("chat.postMessage") if c.status == 429]
    assert len(ratelimited) <= POST_MESSAGE.burst, "at most a burst in the air when Slack first says 429"
    threads = [c.params["thread_ts"] for c in sandbox.bot_messages() if c.params.get("channel") == "C0GENERAL"]
    assert threads[-5:] == sorted(threads[-5:]), "answers that waited leave in the order of their events"


def test_every_fourth_post_refused_with_503_costs_no_answer_and_no_apology(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.fail_calls(every=4, mode="http_503")
    with run_bot(bot_env(sandbox), workdir=tmp_path) as bot:
        ready(sandbox, bot)
        ds = sandbox.mentions([f"ping {i}" for i in range(24)])
        counts = all_answered(sandbox, ds)
    assert set(counts.values()) == {1}
    assert apologies(sandbox) == 0
    assert sum(1 for c in sandbox.calls("chat.postMessage") if c.status == 503) >= 6


def test_posted_then_500_is_found_in_the_thread_and_not_posted_again(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_scopes(WITH_HISTORY)
    sandbox.fail_calls(every=4, mode="internal_error")
    with run_bot(bot_env(sandbox), workdir=tmp_path) as bot:
        ready(sandbox, bot)
        ds = sandbox.mentions([f"ping {i}" for i in range(20)])
        counts = all_answered(sandbox, ds)
        unsure = [c for c in sandbox.calls("chat.postMessage") if c.fault == "internal_error"]
        bot.wait_for_log(r"is already in C0GENERAL", count=len(unsure))
    assert len(unsure) >= 5
    assert set(counts.values()) == {1}, "found by its metadata: none twice"
    assert apologies(sandbox) == 0


@pytest.mark.parametrize(("choice", "twice"), [("repost", True), ("skip", False)])
def test_without_history_scopes_an_unsure_post_is_posted_again_or_not_as_configured(
    sandbox: Sandbox, tmp_path: Path, choice: str, twice: bool
) -> None:
    sandbox.fail_calls(every=4, mode="cut")
    with run_bot(bot_env(sandbox, NONSTOP_UNSURE_ANSWER=choice), workdir=tmp_path) as bot:
        ready(sandbox, bot)
        ds = sandbox.mentions([f"ping {i}" for i in range(12)])
        counts = all_answered(sandbox, ds)
        cut = {c.params["thread_ts"] for c in sandbox.calls("chat.postMessage") if c.fault == "cut"}
        if twice:
            sandbox.wait_until(lambda: sum(answers(sandbox, ds).values()) == 12 + len(cut), what="the reposts")
        else:
            bot.wait_for_log(r"gave up an answer to event .*NONSTOP_UNSURE_ANSWER=skip", count=len(cut))
        counts = answers(sandbox, ds)
    assert cut, "some answers were cut after Slack posted them"
    doubled = {d.ts for d in ds if counts[d.key] == 2}
    assert doubled == (cut if twice else set()), "maybe twice (repost) or never twice (skip), exactly"
    assert max(counts.values()) <= 2
    assert apologies(sandbox) == 0


def test_sigkill_with_replies_in_flight_then_restart_answers_none_twice(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_scopes(WITH_HISTORY)
    env = bot_env(sandbox)
    with run_bot(env, workdir=tmp_path) as bot:
        ready(sandbox, bot)
        sandbox.slow_api(2.0, ["chat.postMessage"])
        # One channel holds at most a burst (4) of posts in the air; 30 channels hold 30.
        ds = [sandbox.mention(f"ping {i}", channel=f"C0KILL{i:03d}") for i in range(30)]
        sandbox.wait_until(lambda: len(sandbox.calls("chat.postMessage")) >= 30, timeout=30, what="30 posts sent")
        bot.proc.kill()
        bot.proc.wait(10)
    # Slack finishes what it was sent: every reply is posted, and the ledger never heard they were.
    sandbox.wait_until(lambda: sum(answers(sandbox, ds).values()) >= 30, timeout=10, what="Slack has the 30")
    sandbox.slow_api(0)
    with run_bot(env, workdir=tmp_path) as again:
        again.wait_for_log(r"running \d+ event\(s\) again that were acked but never finished")
        again.wait_for_log(r"is already in C0KILL", count=30)
        counts = answers(sandbox, ds)
    assert set(counts.values()) == {1}, "none twice"
    assert len(sandbox.calls("chat.postMessage")) == 30, "nothing posted again after the restart"


def test_three_replicas_share_one_posting_budget(sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path) -> None:
    sandbox.set_rate_limits(on=True)
    with replicas(sandbox, redis_server, 3, tmp_path):
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 6, timeout=30, what="6 links")
        ds = sandbox.mentions([f"ping {i}" for i in range(12)])
        counts = all_answered(sandbox, ds)
    assert set(counts.values()) == {1}, "each answered once, whichever replica took it"
    ratelimited = [c for c in sandbox.calls("chat.postMessage") if c.status == 429]
    # Alone, a process learns the limit from Slack's first 429s (up to a burst of them); replicas take
    # turns on one shared bucket from the start, so Slack has no reason to refuse any.
    assert len(ratelimited) <= 1


def test_a_drain_waits_for_answers_still_waiting_on_the_posting_limit(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_rate_limits(on=True)
    port = free_port()
    env = bot_env(sandbox, NONSTOP_DRAIN_TIMEOUT="20", HEALTH_PORT=str(port))
    with run_bot(env, workdir=tmp_path) as bot:
        ready(sandbox, bot)
        probe = Probe(port, bot)
        ds = sandbox.mentions([f"ping {i}" for i in range(8)])
        # Every listener has run: the answers not yet in Slack wait in the governor, on no thread.
        probe.until(
            lambda: answers(sandbox, ds).total() + probe.metric("nonstop_web_api_waiting") >= 8, "all 8 answered"
        )
        assert answers(sandbox, ds).total() < 8, "some answers were still waiting at the SIGTERM"
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=30) == 0
        assert "did not finish" not in bot.log
    assert set(answers(sandbox, ds).values()) == {1}, "the answers that waited went out before the exit"
    with run_bot(env | {"HEALTH_PORT": "0"}, workdir=tmp_path) as again:
        ready(sandbox, again)
        assert "again that were acked but never finished" not in again.log, "every event was finished"
