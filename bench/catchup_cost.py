"""What catch-up costs a healthy bot (issue 18): Web API calls per scan and per hour, and CPU beside the same bot
with `NONSTOP_CATCH_UP=off`. Two real bots (`python app.py`) against one sandbox with Slack's rate limits on,
side by side for the same window, both idle (no mention is made); the calls are counted on the sandbox's side.

    python -m bench.catchup_cost --seconds 60 --period 2 --conversations 10

A short period makes many scans in a short window; the per-hour figures are scaled to the default period
(NONSTOP_CATCH_UP_PERIOD, 120 s). docs/decisions.md ("Catch-up") has a run's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from nonstop.config.settings import SupervisorSettings
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES
from sandbox.testing import TEST_CONFIG
from tests.botprocess import bot_env, run_bot

SCAN_METHODS = ("users.conversations", "conversations.history", "conversations.replies")
PRODUCTION_LINKS = {"NONSTOP_PING_INTERVAL": "2.25", "NONSTOP_STALE_AFTER": "8", "NONSTOP_CONNECTIONS": "1"}


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure(seconds: float, period_s: float, conversations: int) -> dict[str, Any]:
    """Both bots for `seconds`; the calls each scan made and the CPU each bot used meanwhile."""
    config = TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "rate_limits": True})
    with Sandbox(config) as sb, tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir:
        sb.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES])
        for i in range(max(0, conversations - 2)):  # #general and the App Home DM are there already
            sb.user_message(f"chatter {i}", channel=f"C0BENCH{i:03d}")
        on_env = bot_env(sb, NONSTOP_CATCH_UP_PERIOD=f"{period_s:g}", **PRODUCTION_LINKS)
        off_env = bot_env(sb, NONSTOP_CATCH_UP="off", **PRODUCTION_LINKS)
        with run_bot(on_env, workdir=Path(on_dir)) as on, run_bot(off_env, workdir=Path(off_dir)) as off:
            for bot in (on, off):
                bot.wait_for_log(r"connection #1: connected", timeout=30)
            on.wait_for_log(r"catch-up on", timeout=30)
            before = {m: len(sb.calls(m)) for m in SCAN_METHODS}
            cpu_on, cpu_off = _cpu_s(on.pid), _cpu_s(off.pid)
            time.sleep(seconds)  # the measured window itself: both bots idle
            cpu_on, cpu_off = _cpu_s(on.pid) - cpu_on, _cpu_s(off.pid) - cpu_off
            calls = {m: len(sb.calls(m)) - before[m] for m in SCAN_METHODS}
    scans = calls["users.conversations"]
    per_scan = sum(calls.values()) / scans if scans else 0.0
    cpu_per_scan_s = (cpu_on - cpu_off) / scans if scans else 0.0
    default_period = SupervisorSettings().catch_up_period_s
    return {
        "seconds": seconds,
        "period_s": period_s,
        "conversations": conversations,
        "scans": scans,
        "calls": calls,
        "calls_per_scan": round(per_scan, 1),
        "cpu_on_ms": round(cpu_on * 1000),
        "cpu_off_ms": round(cpu_off * 1000),
        "cpu_per_scan_ms": round(cpu_per_scan_s * 1000, 1),
        "at_default_period": {
            "period_s": default_period,
            "calls_per_hour": round(per_scan * 3600 / default_period),
            "cpu_s_per_hour": round(cpu_per_scan_s * 3600 / default_period, 2),
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window (default 60)")
    parser.add_argument("--period", type=float, default=2.0, help="NONSTOP_CATCH_UP_PERIOD of the bot measured")
    parser.add_argument("--conversations", type=int, default=10, help="conversations the bot is in (at least 2)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds, args.period, max(2, args.conversations)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
