"""Issue 20, item 5: the split prototype against the stock handler and Nonstop with and without its workarounds.

    python -m bench.split_eval                      # about 12 min on 2 cores
    python -m bench.split_eval --rounds 2 --tries 2 --idle-windows 1 --idle-s 30    # a quick look
    python -m bench.split_eval --lanes nonstop,nonstop-no-nice,nonstop-no-switch     # other bots (see --help)

Every bot is a real subprocess with its own in-process Sandbox (`bench.procs.Lane`), all started at
once and measured in one run, round by round, so that whatever else loads the machine hits every bot
alike: bursts one bot at a time in an order that rotates every round; the slash command under load and
the idle windows with every bot at once. Prints markdown tables (stdout) and writes every sample to
bench/results/split-eval-*.json. What the rows mean and the decision they fed: docs/decisions.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, scenarios, zero_loss  # noqa: E402
from bench.procs import FLOOR, NONSTOP_PLAIN, SPLIT, Lane, stop_all  # noqa: E402
from sandbox.testing import PROXY_VARS  # noqa: E402

__all__ = ["LANES", "Spec", "footprint", "main", "rotated", "spread"]

RESULTS_DIR = REPO / "bench" / "results"
TUNING_OFF = {"NONSTOP_HANDLER_NICE": "0", "NONSTOP_GIL_SWITCH_INTERVAL": "0"}
PATCHES_ON = {"BENCH_LIBRARY_ACKS": "1", "BENCH_NO_ACKS_FIRST": "1"}  # bench/nonstop_plain.py
MEMORY = {"NONSTOP_LEDGER": "memory://"}


@dataclass(frozen=True)
class Spec:
    kind: str  # bench.procs.command's kind
    title: str
    env: dict[str, str] = field(default_factory=dict)
    bursts_only: bool = False  # the floor and the memory:// twins: burst rows only


LANES: dict[str, Spec] = {
    "floor": Spec(FLOOR, "harness floor (bare client)", bursts_only=True),
    "stock": Spec("stock", "stock SocketModeHandler"),
    "nonstop": Spec("nonstop", "Nonstop (app.py: all four workarounds)"),
    "nonstop-settings-off": Spec("nonstop", "Nonstop, nice and switch interval off", TUNING_OFF),
    "nonstop-all-off": Spec(NONSTOP_PLAIN, "Nonstop, all four off", TUNING_OFF | PATCHES_ON),
    "split": Spec(SPLIT, "split prototype (none of the four)"),
    "nonstop-memory": Spec("nonstop", "Nonstop, memory://", MEMORY, bursts_only=True),
    "split-memory": Spec(SPLIT, "split prototype, memory://", MEMORY, bursts_only=True),
    # one workaround off at a time (not in the default run)
    "nonstop-no-nice": Spec("nonstop", "Nonstop, nice off", {"NONSTOP_HANDLER_NICE": "0"}),
    "nonstop-no-switch": Spec("nonstop", "Nonstop, switch interval off", {"NONSTOP_GIL_SWITCH_INTERVAL": "0"}),
    "nonstop-library-acks": Spec(NONSTOP_PLAIN, "Nonstop, library acks", {"BENCH_LIBRARY_ACKS": "1"}),
    "nonstop-no-acks-first": Spec(NONSTOP_PLAIN, "Nonstop, no acks-first delay", {"BENCH_NO_ACKS_FIRST": "1"}),
    "split-nice": Spec(SPLIT, "split prototype, listener process at nice 10", {"SPLIT_LISTENER_NICE": "10"}),
}
DEFAULT_LANES = ("floor", "stock", "nonstop", "nonstop-settings-off", "nonstop-all-off", "split", "nonstop-memory",
                 "split-memory")  # fmt: skip
LEDGER_PAIRS = (("nonstop", "nonstop-memory"), ("split", "split-memory"))

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[split-eval {time.monotonic() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def rotated(names: list[str], by: int) -> list[str]:
    """`names` starting at position `by` (modulo its length): round r's order, so no bot always goes first."""
    if not names:
        return []
    at = by % len(names)
    return names[at:] + names[:at]


def spread(values: list[float | None]) -> dict[str, float | None]:
    """Median, least and most of the numbers in `values` (None: not measured, left out)."""
    nums = sorted(v for v in values if v is not None)
    if not nums:
        return {"median": None, "min": None, "max": None}
    return {"median": scenarios.median_or_none(list(nums)), "min": nums[0], "max": nums[-1]}


def footprint(lane: Lane) -> dict[str, Any]:
    """Memory and threads of the bot, summed over its process and every process it started."""
    with contextlib.suppress(psutil.Error):
        root = lane.ps()
        procs = [root, *root.children(recursive=True)]
        return {
            "processes": len(procs),
            "rss_mb": sum(p.memory_info().rss for p in procs) / 2**20,
            "uss_mb": sum(p.memory_full_info().uss for p in procs) / 2**20,
            "threads": sum(p.num_threads() for p in procs),
        }
    return {}


# --- the phases --------------------------------------------------------------------------------------------


def bursts(lanes: dict[str, Lane], rounds: int, size: int) -> dict[str, dict[str, Any]]:
    """Per shape, per bot: `rounds` bursts of `size`, one bot at a time, each round in a rotated order."""
    done: dict[str, dict[str, list[dict[str, Any]]]] = {s: {n: [] for n in lanes} for s in scenarios.BURST_SHAPES}
    for r in range(rounds):
        for shape in scenarios.BURST_SHAPES:
            for name in rotated(list(lanes), r):
                done[shape][name].append(scenarios.burst(lanes[name], size, shape))
                time.sleep(2.0)  # the last bot's replies are over before the next burst
            say(f"  bursts: round {r + 1} of {rounds}, {shape} done")
    return {shape: {name: _pooled(b) for name, b in by.items()} for shape, by in done.items()}


def _pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return scenarios.pool_bursts(rounds) | {"round_p50_s": [r["ack_p50_s"] for r in rounds]}


def commands(lanes: dict[str, Lane], tries: int) -> dict[str, Any]:
    """Per bot: `tries` slash commands under load (bench/zero_loss.py), every bot at once in each try."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in lanes}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        for t in range(tries):
            futures = {name: pool.submit(zero_loss.command_under_load, lane, 1) for name, lane in lanes.items()}
            for name, future in futures.items():
                samples[name].extend(future.result()["samples"])
            say(f"  commands: try {t + 1} of {tries} done")
    out: dict[str, Any] = {}
    for name, got in samples.items():
        times = [s["ack_s"] for s in got if s["ack_s"] is not None]
        out[name] = {
            "samples": got,
            "in_time": len(times),
            "tries": len(got),
            "p50_s": scenarios.percentile(times, 50),
            "p99_s": scenarios.percentile(times, 99),
        }
    return out


def idle(lanes: dict[str, Lane], windows: int, seconds: float) -> dict[str, Any]:
    """Per bot: CPU time over `windows` windows of `seconds`, every bot in the same windows."""
    per: dict[str, list[float]] = {name: [] for name in lanes}
    by_lane = {id(lane): name for name, lane in lanes.items()}
    for w in range(windows):
        got = scenarios.idle_cpu(list(lanes.values()), seconds, by=lambda lane: by_lane[id(lane)])
        for name, value in got.items():
            per[name].append(value["cpu_seconds"])
        say(f"  idle: window {w + 1} of {windows} done")
    return {name: {"cpu_s": values, "window_s": seconds, **spread(list(values))} for name, values in per.items()}


# --- the tables ---------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _range(values: list[float | None]) -> str:
    s = spread(values)
    return f"{_ms(s['min'])} to {_ms(s['max'])}"


def render(results: dict[str, Any]) -> str:
    names: list[str] = results["lanes"]
    rows: list[tuple[str, dict[str, str]]] = []
    for shape in scenarios.BURST_SHAPES:
        title = scenarios.BURST_TITLES[shape]
        pooled = results["bursts"].get(shape, {})
        n = next(iter(pooled.values()), {}).get("rounds", 0)
        rows.append(
            (
                f"ack p50 / p99, 300 mentions {title} ({n} bursts pooled)",
                {k: f"{_ms(v['ack_p50_s'])} / {_ms(v['ack_p99_s'])}" for k, v in pooled.items()},
            )
        )
        rows.append(
            (
                f"  per-burst p50; p99, least to most ({title})",
                {k: f"{_range(v.get('round_p50_s', []))}; {_range(v['round_p99_s'])}" for k, v in pooled.items()},
            )
        )
        rows.append(
            (
                f"  all answered after, median (range) ({title})",
                {
                    k: f"{_ms(v['all_answered_after_s'])} ({_range(v['round_all_answered_after_s'])})"
                    for k, v in pooled.items()
                },
            )
        )
    cmd = results.get("commands", {})
    rows.append(
        (
            "/nonstop ping under load: in time, ack p50 / p99",
            {k: f"{v['in_time']} of {v['tries']}, {_ms(v['p50_s'])} / {_ms(v['p99_s'])}" for k, v in cmd.items()},
        )
    )
    if results.get("idle"):
        window = next(iter(results["idle"].values()))["window_s"]
        rows.append(
            (
                f"idle CPU time per {window:g} s, median (range)",
                {k: f"{_ms(v['median'])} ({_range(v['cpu_s'])})" for k, v in results["idle"].items()},
            )
        )
    for when in ("start", "end"):
        fp = results.get(f"footprint_{when}", {})
        rows.append(
            (
                f"RSS / USS, threads, processes ({when})",
                {
                    k: f"{v['rss_mb']:.1f} / {v['uss_mb']:.1f} MB, {v['threads']}, {v['processes']}"
                    for k, v in fp.items()
                    if v
                },
            )
        )
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells.get(n, "") for n in names) + " |" for label, cells in rows]
    ledger = [
        f"| ledger: p99 SQLite ÷ memory://, {scenarios.BURST_TITLES[shape]} | {a} | "
        f"{_ms(results['bursts'][shape][a]['ack_p99_s'])} ÷ {_ms(results['bursts'][shape][b]['ack_p99_s'])} = "
        f"{results['bursts'][shape][a]['ack_p99_s'] / results['bursts'][shape][b]['ack_p99_s']:.2f}x |"
        for shape in scenarios.BURST_SHAPES
        for a, b in LEDGER_PAIRS
        if a in results["bursts"].get(shape, {}) and b in results["bursts"].get(shape, {})
        and results["bursts"][shape][b]["ack_p99_s"]
    ]  # fmt: skip
    if ledger:
        lines += ["", "| row | bot | value |", "|---|---|---|", *ledger]
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.split_eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lanes", default=",".join(DEFAULT_LANES), help=f"bots, of: {', '.join(LANES)}")
    parser.add_argument("--rounds", type=int, default=5, help="bursts per bot and shape (default 5)")
    parser.add_argument("--size", type=int, default=300, help="mentions per burst (default 300)")
    parser.add_argument("--tries", type=int, default=8, help="slash commands under load per bot (default 8)")
    parser.add_argument("--idle-windows", type=int, default=3, help="idle CPU windows (default 3)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="seconds per idle window (default 60)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.lanes.split(",") if n.strip()]
    unknown = [n for n in names if n not in LANES]
    if unknown or not names:
        parser.error(f"--lanes takes names of: {', '.join(LANES)} (unknown: {', '.join(unknown) or 'none given'})")
    for name in PROXY_VARS:  # the sandboxes are on 127.0.0.1
        os.environ.pop(name, None)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "lanes": names,
        "specs": {n: asdict(LANES[n]) for n in names},
        "machine": report.machine(),
        "code": report.code_state(REPO),
        "load_before": os.getloadavg(),
    }
    lanes: dict[str, Lane] = {}
    try:
        for name in names:
            spec = LANES[name]
            lanes[name] = Lane(spec.kind, f"split-eval-{name}", env=spec.env)
            lanes[name].start()
        for name, lane in lanes.items():
            if not lane.wait_live(30):
                raise RuntimeError(f"{name} never became live:\n{lane.log_tail()}")
        full = {n: lane for n, lane in lanes.items() if not LANES[n].bursts_only}
        results["footprint_start"] = {n: footprint(lane) for n, lane in full.items()}
        say(f"{len(lanes)} bots live; bursts: {args.rounds} rounds x {args.size} mentions x 2 shapes")
        results["bursts"] = bursts(lanes, args.rounds, args.size)
        results["footprint_end"] = {n: footprint(lane) for n, lane in full.items()}
        if args.tries > 0:
            say(f"slash command under load: {args.tries} tries, {len(full)} bots at once")
            results["commands"] = commands(full, args.tries)
        if args.idle_windows > 0:
            say(f"idle CPU: {args.idle_windows} windows of {args.idle_s:g} s, {len(full)} bots at once")
            results["idle"] = idle(full, args.idle_windows, args.idle_s)
        results["restarts"] = {n: lane.restarts for n, lane in lanes.items()}
    finally:
        stop_all()  # every lane started
    path = report.save_run(results, render, args.out, "split-eval", started=started, t0=T0)
    say(f"results: {path}; {results['wall_s']:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
