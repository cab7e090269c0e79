"""bench/catchup_cost.py measures what it says: scans of the bot with catch-up on, counted at the sandbox."""

from __future__ import annotations

from bench.catchup_cost import measure


def test_a_short_run_counts_one_list_and_one_read_per_conversation_a_scan() -> None:
    result = measure(seconds=3.0, period_s=1.0, conversations=3)
    scans, calls = result["scans"], result["calls"]
    assert scans >= 2
    assert abs(calls["conversations.history"] - 3 * scans) <= 3, "one read per conversation (a scan may straddle)"
    assert calls["conversations.replies"] == 0, "no thread has new replies in an idle workspace"
    assert result["at_default_period"]["calls_per_hour"] == round(result["calls_per_scan"] * 3600 / 120)
    assert result["cpu_on_ms"] >= 0
    assert result["cpu_off_ms"] >= 0
