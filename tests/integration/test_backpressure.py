"""Backpressure (issue 9): a burst past NONSTOP_MAX_BACKLOG is left to Slack's retries, not queued.

The real bot process against the sandbox, with Slack's retry schedule compressed (tests/ TEST_CONFIG).
"""

from __future__ import annotations

from sandbox import Sandbox
from sandbox.records import Delivery
from tests.botprocess import bot_env, run_bot
from tests.integration.answers import every_one_answered
from tests.integration.test_zero_loss import live


def max_in_progress(sb: Sandbox, ds: list[Delivery]) -> int:
    """The most events that were acked and not yet answered at any one moment."""
    first_answer: dict[str, float] = {}
    for c in sb.bot_messages():
        ts = c.params.get("thread_ts")
        if c.answered_at is not None and ts:
            first_answer[ts] = min(first_answer.get(ts, c.answered_at), c.answered_at)
    acked = {r.key: r.acked_at for r in sb.deliveries()}
    edges: list[tuple[float, int]] = []
    for d in ds:
        acked_at = acked.get(d.key)
        if acked_at is not None and d.ts in first_answer:
            edges += [(acked_at, 1), (first_answer[d.ts], -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an answer and an ack at one instant: answer first
        level += step
        peak = max(peak, level)
    return peak


def test_a_burst_past_the_backlog_is_left_to_slacks_retries_and_nothing_is_lost(sandbox: Sandbox) -> None:
    bound = 700
    with run_bot(bot_env(sandbox, NONSTOP_MAX_BACKLOG=str(bound))) as bot:
        live(sandbox, 2)
        sandbox.slow_api(0.1, ["chat.postMessage"])
        # Over 8 channels: the answer path keeps at most a burst (4) of one channel's posts in the air, so
        # 8 channels answer 32 at a time, as many as the event lane runs.
        ds = [sandbox.mention(f"ping {i}", channel=f"C0BACK{i % 8:03d}") for i in range(2000)]
        counts = every_one_answered(sandbox, ds, timeout=120)
        assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
        # Past the bound, envelopes were left unacked (and answered on a retry), not queued in memory: at no
        # moment were more events acked-and-unanswered than the bound (seen from Slack's side).
        assert max_in_progress(sandbox, ds) <= bound, max_in_progress(sandbox, ds)
        records = {r.key: r for r in sandbox.deliveries()}
        assert any(records[d.key].ack_envelope_id != records[d.key].attempts[0].envelope_id for d in ds)
        bot.wait_for_log(r"backlog full \(\d+ events in progress, NONSTOP_MAX_BACKLOG=700\)")
        assert "Traceback" not in bot.log
