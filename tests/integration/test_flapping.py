"""Issue 18, on the real bot process against the sandbox: a network path that dies again and again does not fill
Slack's budget of 10 with the bot's own dead sockets, and when Slack refuses connections anyway the bot says so.

Production liveness timers and spare calm (10 s), as in test_recovery.py: the policy's timing is what is tested.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES
from sandbox.socket import REFUSED
from sandbox.testing import raw_connect
from tests.botprocess import bot_env, run_bot
from tests.integration.test_recovery import DEAD_LINKS, PRODUCTION_LIVENESS
from tests.integration.test_supervisor import answered_once, live, wait_live
from tests.ops.test_health_integration import Probe, free_port

SILENCE_GAP_S = 8.0  # issue 18's scenario: the whole path silent three times, 8 s apart


@pytest.fixture
def dead_links_sandbox(no_proxy_env: None) -> Iterator[Sandbox]:
    with Sandbox(DEAD_LINKS) as sb:  # Slack counts a dead socket for 10 minutes: longer than the test
        yield sb


def test_three_silences_8_s_apart_leave_the_bot_able_to_open_links(dead_links_sandbox: Sandbox) -> None:
    sb = dead_links_sandbox
    with run_bot(bot_env(sb, **PRODUCTION_LIVENESS, NONSTOP_SPARE_CHECK="600")) as bot:
        wait_live(sb, 2)
        dead: set[str] = set()
        start = time.monotonic()
        for i in range(3):
            # The scenario's pacing: the path dies every 8 s whatever the bot does meanwhile (a stimulus, not a wait
            # for an outcome); each time the bot must be listening again within the deadline.
            sb.wait_until(lambda i=i: time.monotonic() >= start + i * SILENCE_GAP_S, 30, "the next silence's time")
            dead |= set(sb.silence())
            wait_live(sb, 1, timeout=15)
        # One link after each silence (the path had not stayed up 10 s): Slack counts 2 + 1 + 1 dead sockets, not
        # 2 + 6 + 2, and the bot holds one slot and four spares once the path is calm: a retry lands on a live one
        # 5 times in 9, and one more silence still leaves room for its replacement.
        assert len(dead) == 4, sorted(dead)
        wait_live(sb, 5, timeout=40)
        bot.wait_for_log(r"the network path died again .* while Slack still counts the dead", timeout=5)
        d = next(
            d
            for batch in range(20)
            for d in sb.mentions([f"ping flapping {batch}.{i}" for i in range(10)])
            if sb.wait_until(lambda d=d: sb.delivery(d).attempts[0].connection_id, what="first attempt") in live(sb)
        )  # a first attempt that went to a live link: the bot listens
        answered_once(sb, bot, d, timeout=30)
        assert len(live(sb)) + len(dead) <= 9, "room kept for one more silence's replacement"
        assert not [c.id for c in sb.connections() if c.disconnect_reason == REFUSED], "Slack never had to refuse"


def test_with_catch_up_on_the_spares_open_at_once_after_a_silence(no_proxy_env: None) -> None:
    """History scopes granted: catch-up hears what a deaf bot misses, so the calm's price (one link of three for
    10 s after a lone silence) is not paid; the one-slot rule while silences repeat stays."""
    scopes = (*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES)
    with (
        Sandbox(dataclasses.replace(DEAD_LINKS, bot_scopes=scopes)) as sb,
        run_bot(bot_env(sb, **PRODUCTION_LIVENESS, NONSTOP_SPARE_CHECK="600")) as bot,
    ):
        bot.wait_for_log(r"catch-up on \(", timeout=15)
        wait_live(sb, 2)
        silenced_at = time.monotonic()
        sb.silence()
        wait_live(sb, 6, timeout=15)  # two slots and four spares
        assert time.monotonic() - silenced_at < 10, "the spares waited, as if no catch-up"
        assert "the network path died moments ago" not in bot.log


def test_status_and_metrics_say_when_slack_refuses_connections(sandbox: Sandbox) -> None:
    """Another process holds all 10 of the app's connections: Slack refuses every link of the bot until some go."""
    port = free_port()
    with contextlib.ExitStack() as held:
        squatters = [held.enter_context(raw_connect(sandbox)) for _ in range(sandbox.config.max_connections)]
        sandbox.wait_for_connections(len(squatters))
        with run_bot(bot_env(sandbox, HEALTH_PORT=str(port))) as bot:
            probe = Probe(port, bot)
            probe.until(lambda: probe.metric("nonstop_slack_refusing_connections") == 1, "refusing in /metrics")
            assert probe.metric("nonstop_state", nonstop_state="refused") == 1
            assert probe.metric("nonstop_connection_attempts_total", outcome=REFUSED) >= 1
            status, ready = probe.ready()
            assert status == 503, ready
            assert ready["state"] == "refused: Slack refuses new connections: 10 of 10 counted, 0 live here", ready
            bot.wait_for_log(r"too_many_websockets", timeout=5)

            for ws in squatters[:3]:  # the other process lets three go: the bot gets its links
                ws.close()
            wait_live(sandbox, sandbox.config.max_connections - 1, timeout=15)
            probe.until(lambda: probe.metric("nonstop_slack_refusing_connections") == 0, "no longer refusing")
            probe.until(lambda: probe.ready()[0] == 200, "ready again")
            assert probe.metric("nonstop_state", nonstop_state="refused") == 0
            for ws in squatters[3:]:  # Slack routes to every connection of the app: the squatters never answer
                ws.close()
            answered_once(sandbox, bot, sandbox.mention("ping after the refusals"), timeout=15)
