"""Three silences (issue 18): the whole network path goes silent three times, 8 s apart, while Slack goes on
counting each dead socket for 10 minutes; then 2 mentions a second for 60 s. Answered, lost and doubled per bot,
Nonstop (no history scopes: nothing to catch up from) beside the stock `SocketModeHandler` (builtin client) and
the stock aiohttp `AsyncSocketModeHandler`, each with its own sandbox, the faults at the same moments in all.

    python -m bench.silences                 # one run, about 2.5 min; prints a markdown table
    python -m bench.silences --runs 3        # three runs one after another (the spread)
    python -m bench.silences --history-scopes   # Nonstop with catch-up on (the stock bots read no history)

What it shows: every silence turns each link a bot holds into a dead socket that Slack still counts (and routes
to) for `silent_link_alive_s`; a bot that opens many links between silences fills Slack's budget of 10 with its
own dead sockets, and Slack then refuses every new one (`too_many_websockets`). docs/benchmark.md has the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procs import BENCH_CONFIG, STOCK_ASYNC, Lane, history_scopes, stop_all, stop_lanes, use_history_scopes  # noqa: E402
from bench.scenarios import SETTLE_S  # noqa: E402
from bench.zero_loss import mix_outcome, wait_all_answered, wait_answers, wait_links, wait_settled  # noqa: E402
from sandbox.socket import REFUSED  # noqa: E402
from sandbox.testing import PROXY_VARS  # noqa: E402

SILENCES = 3
SILENCE_GAP_S = 8.0
ALIVE_S = 600.0  # Slack counts a dead socket for 10 minutes (python-slack-sdk #1940 saw 1.5 h)
MENTION_EVERY_S = 0.5
MENTIONS_FOR_S = 60.0
CONFIG = dataclasses.replace(BENCH_CONFIG, silent_link_alive_s=ALIVE_S)
KINDS = ("nonstop", "stock", STOCK_ASYNC)
TITLES = {"nonstop": "Nonstop", "stock": "stock, builtin client", STOCK_ASYNC: "stock, aiohttp"}


def silences_then_mentions(lanes: list[Lane]) -> dict[str, Any]:
    """Silence every lane's links three times, 8 s apart; then a mention every 0.5 s for 60 s into each; wait for
    every delivery's final outcome and count per bot."""
    for lane in lanes:
        wait_links(lane)
        if not lane.settle(SETTLE_S, SETTLE_S + 30):
            raise RuntimeError(f"{lane.name}: links not settled:\n{lane.log_tail()}")
    start = time.monotonic()
    struck: list[tuple[float, str]] = []
    for i in range(SILENCES):
        pause = start + i * SILENCE_GAP_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        at = time.monotonic()
        for lane in lanes:
            lane.sb.silence()
        struck.append((at, "silence"))
    sent: dict[str, list[Any]] = {lane.name: [] for lane in lanes}
    first = time.monotonic()
    for i in range(round(MENTIONS_FOR_S / MENTION_EVERY_S)):
        pause = first + i * MENTION_EVERY_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for lane in lanes:
            sent[lane.name].append(lane.sb.mention(f"ping silences {i}"))
    wait_settled(lanes, sent)
    if history_scopes():  # catch-up answers what Slack gave up on; the stock bots read no history
        wait_all_answered([lane for lane in lanes if lane.kind == "nonstop"], sent, 60.0)
    for lane in lanes:
        wait_answers(lane, sent[lane.name], timeout=15.0, quiet_s=3.0)
    out: dict[str, Any] = {}
    for lane in lanes:
        outcome = mix_outcome(lane, sent[lane.name], [], struck, start)
        conns = lane.sb.connections()
        outcome["refused"] = sum(1 for c in conns if c.disconnect_reason == REFUSED)
        outcome["opened"] = sum(1 for c in conns if c.hello_at is not None)
        out[lane.kind] = outcome
    return out


def one_run(kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    started: list[Lane] = []
    try:
        for kind in kinds:
            lane = Lane(kind, f"silences-{kind}", config=CONFIG)
            started.append(lane)
            lane.start()
        return silences_then_mentions(started)
    finally:
        stop_lanes(started)


def table(runs: list[dict[str, Any]]) -> str:
    rows = [
        "| bot | " + " | ".join(f"run {i + 1}: answered / lost / doubled" for i in range(len(runs))) + " | refused |",
        "|---|" + "---|" * len(runs) + "---|",
    ]
    for kind in runs[0]:
        cells = [f"{r[kind]['answered']} / {r[kind]['lost']} / {r[kind]['doubled']}" for r in runs]
        refused = ", ".join(str(r[kind]["refused"]) for r in runs)
        rows.append(f"| {TITLES.get(kind, kind)} | " + " | ".join(cells) + f" | {refused} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs, one after another")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="directory for the JSON")
    parser.add_argument("--history-scopes", action="store_true", help="grant catch-up's scopes (Nonstop's catch-up on)")
    a = parser.parse_args(argv)
    use_history_scopes(a.history_scopes)
    for name in PROXY_VARS:
        os.environ.pop(name, None)
    when = dt.datetime.now(dt.UTC)
    runs: list[dict[str, Any]] = []
    try:
        for i in range(a.runs):
            load = os.getloadavg()[0]
            print(f"[silences] run {i + 1} of {a.runs}, load {load:.2f}", file=sys.stderr, flush=True)
            runs.append(one_run() | {"_load": load})  # type: ignore[dict-item]
    finally:
        stop_all()
    loads = [r.pop("_load") for r in runs]
    text = table(runs)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"silences-{when.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"started": when.isoformat(), "history_scopes": a.history_scopes, "loads": loads, "runs": runs}
    path.write_text(json.dumps(record, indent=2, default=str))
    print(text)
    print("Nonstop with its history scopes (catch-up on)" if a.history_scopes else "Nonstop without history scopes")
    print(f"load (1 min) at each run's start: {', '.join(f'{x:.2f}' for x in loads)}; {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
