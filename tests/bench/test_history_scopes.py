"""bench/run.py --history-scopes: every lane's sandbox grants catch-up's scopes, and the report says so.
Real sandboxes on 127.0.0.1 (no bot process): the scopes are read back as Slack's answers would carry them."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bench import procs, zero_loss
from bench.report import SCOPES_LINE, render
from bench.run import FULL, results_path
from bench.zero_loss import wait_all_answered
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES


@pytest.fixture(autouse=True)
def scopes_off_after() -> Iterator[None]:
    yield
    procs.use_history_scopes(False)


def granted(lane: procs.Lane) -> list[str]:
    lane.sb.start()
    try:
        return lane.sb.scopes()
    finally:
        lane.sb.stop()


def test_by_default_a_lane_grants_only_the_manifests_first_scopes() -> None:
    assert granted(procs.Lane("stock", "t-default")) == BOT_SCOPES.split(",")


def test_with_history_scopes_every_lane_grants_the_history_and_read_scopes_too_each_once() -> None:
    procs.use_history_scopes()
    for kind in ("stock", "nonstop"):
        scopes = granted(procs.Lane(kind, f"t-history-{kind}"))
        assert scopes[:3] == BOT_SCOPES.split(",")
        assert set(scopes) == {*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES}
        assert len(scopes) == len(set(scopes))


def test_a_lanes_own_config_keeps_its_other_settings_with_the_scopes_added() -> None:
    config = procs.with_history_scopes(procs.BENCH_CONFIG)
    assert config.retry_delays_s == procs.BENCH_CONFIG.retry_delays_s
    assert config.rate_limits == procs.BENCH_CONFIG.rate_limits
    assert procs.with_history_scopes(config) == config


def minimal_results(**extra: object) -> dict[str, object]:
    return {
        "profile": asdict(FULL),
        "zero_loss_profile": asdict(zero_loss.FULL),
        "machine": {"cpu": "x", "cores": 2, "python": "3.11", "os": "linux", "slack_bolt": "1", "slack_sdk": "3"},
        "argv": ["--only", "faultmix", "--history-scopes"],
        "wall_s": 1.0,
        "started": "2026-12-03 14:00 UTC",
        "zero_loss": {},
        "answers": {},
        "notes": [],
    } | extra


def test_the_report_says_when_the_scopes_were_granted_and_only_then() -> None:
    assert SCOPES_LINE in render(minimal_results(history_scopes=True))
    assert SCOPES_LINE not in render(minimal_results(history_scopes=False))
    assert SCOPES_LINE not in render(minimal_results())  # results from before the option


def test_the_final_wait_ends_once_every_mention_has_a_reply_and_not_before() -> None:
    lane = procs.Lane("nonstop", "t-final-wait")
    lane.sb.start()
    try:
        sent = {lane.name: [lane.sb.mention("ping 0"), lane.sb.mention("ping 1")]}
        bot = WebClient(token=lane.sb.bot_token, base_url=lane.sb.api_url)
        bot.chat_postMessage(channel=sent[lane.name][0].channel, thread_ts=sent[lane.name][0].ts, text="pong")
        began = time.monotonic()
        wait_all_answered([lane], sent, timeout=0.5)  # one still unanswered: the whole wait
        assert time.monotonic() - began >= 0.5
        bot.chat_postMessage(channel=sent[lane.name][1].channel, thread_ts=sent[lane.name][1].ts, text="pong")
        began = time.monotonic()
        wait_all_answered([lane], sent, timeout=30)
        assert time.monotonic() - began < 5
    finally:
        lane.sb.stop()


def test_the_idle_row_says_how_many_catch_up_scans_its_window_held() -> None:
    def idle(scans: int | None) -> dict[str, object]:
        nonstop: dict[str, object] = {"cpu_percent": 0.06, "cpu_seconds": 0.2, "window_s": 360.0}
        if scans is not None:
            nonstop["catch_up_scans"] = scans
        return {"stock": {"cpu_percent": 0.07, "cpu_seconds": 0.25, "window_s": 360.0}, "nonstop": nonstop}

    assert "(200 ms), with 3 catch-up scans |" in render(minimal_results(idle=idle(3)))
    assert "(200 ms), with 1 catch-up scan |" in render(minimal_results(idle=idle(1)))
    assert "(200 ms) |" in render(minimal_results(idle=idle(0)))
    assert "(200 ms) |" in render(minimal_results(idle=idle(None)))


def test_two_runs_started_in_the_same_second_keep_both_results(tmp_path: Path) -> None:
    started = dt.datetime(2026, 12, 3, 14, 5, 0, tzinfo=dt.UTC)
    first = results_path(tmp_path, started, quick=False)
    assert first.name == "bench-20261203-140500.json"
    first.write_text("{}")
    second = results_path(tmp_path, started, quick=False)
    assert second.name == "bench-20261203-140500-2.json"
    second.write_text("{}")
    assert results_path(tmp_path, started, quick=True).name == "bench-20261203-140500-quick.json"
    assert results_path(tmp_path, started, quick=False).name == "bench-20261203-140500-3.json"
