"""Issue 19: an `AsyncApp` on Bolt's stock `AsyncSocketModeHandler` and on Nonstop's async drop-in, side by side.

    python -m bench.aio_eval                       # about 8 min on 2 cores
    python -m bench.aio_eval --rounds 2 --samples 1    # a quick look

The same `AsyncApp` (`bench/async_bot.py`) under each handler with its defaults, each a real subprocess with its
own in-process Sandbox (`bench.procs.Lane`), plus the harness floor (a bare client that acks at once). Rows:

- burst ack latency: `--rounds` bursts of `--size` mentions, both shapes (`bench.scenarios.BURST_SHAPES`), one bot
  at a time in an order that rotates every round; percentiles over every ack of every round.
- fault recovery: seconds from a fault to the bot's first new live link (`bench.scenarios.fault_samples`), for a
  TCP reset, a half-open link and Slack's close frame 1001, `--samples` of each, both bots at once.

Prints markdown tables (stdout) and writes every sample to bench/results/aio-eval-*.json; docs/benchmark.md
keeps the dated rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, scenarios  # noqa: E402
from bench.procs import FLOOR, NONSTOP_ASYNC, STOCK_ASYNC, Lane, stop_all  # noqa: E402
from bench.split_eval import bursts  # noqa: E402
from sandbox.testing import PROXY_VARS  # noqa: E402

__all__ = ["main", "render"]

RESULTS_DIR = REPO / "bench" / "results"
BOTS = {STOCK_ASYNC: "AsyncApp, stock AsyncSocketModeHandler", NONSTOP_ASYNC: "AsyncApp, Nonstop's async drop-in"}
FAULTS = ("reset", "silence", "close_1001")
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[aio-eval {time.monotonic() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def recovery(lanes: dict[str, Lane], samples: int) -> dict[str, Any]:
    """Both bots at once, each on its own sandbox: `samples` of every fault, in turn."""
    plan = scenarios.FaultPlan(cap_s=90.0)
    faults = [fault for _ in range(samples) for fault in FAULTS]
    with concurrent.futures.ThreadPoolExecutor(len(lanes)) as pool:
        futures = {name: pool.submit(scenarios.fault_samples, lane, faults, plan) for name, lane in lanes.items()}
        raw = {name: future.result() for name, future in futures.items()}
    return {
        name: {
            "faults": {fault: scenarios.stats(values) for fault, values in value["samples"].items()},
            "notes": value["notes"],
        }
        for name, value in raw.items()
    }


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(results: dict[str, Any]) -> str:
    lines = [f"Run {results['started']} at {results['code']['commit']}; {report.machine_line(results['machine'])}", ""]
    for shape, by_bot in results.get("bursts", {}).items():
        lines += [
            f"Burst ack latency, {scenarios.BURST_TITLES[shape]} ({results['args']['rounds']} x "
            f"{results['args']['size']} mentions per bot)",
            "",
            "| bot | acked | ack p50 | ack p99 | max | rounds' p99 | all answered after |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, pooled in by_bot.items():
            rounds = ", ".join(_ms(v) for v in pooled["round_p99_s"])
            answered = pooled["all_answered_after_s"]
            lines.append(
                f"| {BOTS.get(name, 'harness floor (bare client)')} | {pooled['acked']}/{pooled['sent']} | "
                f"{_ms(pooled['ack_p50_s'])} | {_ms(pooled['ack_p99_s'])} | {_ms(pooled['ack_max_s'])} | "
                f"{rounds} | {'n/a' if answered is None else f'{answered:.1f} s'} |"
            )
        lines.append("")
    if "recovery" in results:
        lines += [
            "Fault recovery: seconds to the first new live link (median, min-max, never)",
            "",
            "| bot | " + " | ".join(scenarios.FAULT_TITLES[f] for f in FAULTS) + " |",
            "|---|" + "---|" * len(FAULTS),
        ]
        for name, value in results["recovery"].items():
            cells = []
            for fault in FAULTS:
                s = value["faults"].get(fault, {})
                if not s:
                    cells.append("n/a")
                    continue
                median = "never" if s["median_s"] is None else f"{s['median_s']:.2f} s"
                span = "" if s["min_s"] is None else f" ({s['min_s']:.2f}-{s['max_s']:.2f})"
                cells.append(f"{median}{span}, never {s['never']}/{len(s['samples'])}")
            lines.append(f"| {BOTS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aio_eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="bursts per bot and shape (default 5)")
    parser.add_argument("--size", type=int, default=300, help="mentions per burst (default 300)")
    parser.add_argument("--samples", type=int, default=3, help="samples of each fault per bot (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results")
    args = parser.parse_args(argv)
    for name in PROXY_VARS:  # the sandboxes are on 127.0.0.1
        os.environ.pop(name, None)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": report.machine(),
        "code": report.code_state(REPO),
        "load_before": os.getloadavg(),
    }
    lanes: dict[str, Lane] = {}
    try:
        for kind in (FLOOR, *BOTS):
            lanes[kind] = Lane(kind, f"aio-eval-{kind}").start()
        for name, lane in lanes.items():
            if not lane.wait_live(30):
                raise RuntimeError(f"{name} never became live:\n{lane.log_tail()}")
        if args.rounds > 0:
            say(f"bursts: {args.rounds} rounds x {args.size} mentions x 2 shapes")
            results["bursts"] = bursts(lanes, args.rounds, args.size)
        lanes.pop(FLOOR).stop()
        if args.samples > 0:
            say(f"fault recovery: {args.samples} x {', '.join(FAULTS)} per bot, both at once")
            results["recovery"] = recovery(lanes, args.samples)
        results["restarts"] = {n: lane.restarts for n, lane in lanes.items()}
    finally:
        stop_all()  # every lane started
    path = report.save_run(results, render, args.out, "aio-eval", started=started, t0=T0)
    say(f"results: {path}; {results['wall_s']:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
