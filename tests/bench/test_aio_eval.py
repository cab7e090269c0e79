"""bench/aio_eval.py's table, and the async bots it runs: each handler is what its name says, and answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.aio_eval import render
from bench.procs import ASYNC_KINDS, NONSTOP_ASYNC, STOCK_ASYNC, Lane, command, links_wanted
from sandbox import Sandbox


def test_the_table_names_each_bot_and_says_never_for_a_fault_it_did_not_recover_from() -> None:
    pooled = {"acked": 3, "sent": 3, "ack_p50_s": 0.001, "ack_p99_s": 0.02, "ack_max_s": 0.03}
    pooled |= {"round_p99_s": [0.02], "all_answered_after_s": 0.5}
    never = {"samples": [None], "median_s": None, "min_s": None, "max_s": None, "never": 1}
    results = {
        "started": "2026-12-03 11:47 UTC",
        "code": {"commit": "abc1234"},
        "machine": {"cpu": "cpu", "cores": 2, "python": "3.11", "os": "linux", "slack_bolt": "1", "slack_sdk": "3"},
        "args": {"rounds": "1", "size": "3"},
        "bursts": {"at_once": {STOCK_ASYNC: pooled, NONSTOP_ASYNC: pooled}},
        "recovery": {STOCK_ASYNC: {"faults": {"reset": never}}, NONSTOP_ASYNC: {"faults": {}}},
    }
    table = render(results)
    assert "| AsyncApp, stock AsyncSocketModeHandler | 3/3 | 1 ms | 20 ms | 30 ms | 20 ms | 0.5 s |" in table
    assert "| AsyncApp, stock AsyncSocketModeHandler | never, never 1/1 | n/a | n/a |" in table
    assert "| AsyncApp, Nonstop's async drop-in | n/a | n/a | n/a |" in table


def test_each_async_bot_runs_its_own_handler() -> None:
    assert [command(kind)[-1] for kind in ASYNC_KINDS] == ["stock", "nonstop"]
    assert (links_wanted(STOCK_ASYNC), links_wanted(NONSTOP_ASYNC)) == (1, 2)


@pytest.fixture(params=ASYNC_KINDS)
def bot(request: pytest.FixtureRequest) -> Iterator[Lane]:
    lane = Lane(request.param, f"test-{request.param}").start()
    try:
        yield lane
    finally:
        lane.stop()


def test_the_async_bot_answers_a_mention_and_a_command(bot: Lane) -> None:
    sb: Sandbox = bot.sb
    sb.wait_for_connections(links_wanted(bot.kind), timeout=30)
    d = sb.mention("ping")
    assert sb.wait_for_message(thread_ts=d.ts, timeout=30).params["text"] == "pong"
    assert sb.wait_for_ack(sb.slash_command("ping")).payload == {"text": "pong", "response_type": "ephemeral"}
