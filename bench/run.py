"""Benchmark: the stock `SocketModeHandler` bot and Nonstop, side by side, under the same faults and load.

    python bench/run.py            # full run: about 35 min on 2 cores (estimate), the 30-min soak alongside
    python bench/run.py --quick    # fewer samples, shorter phases, no soak (about 8 min on 2 cores: 5 the answer rows)
    python bench/run.py --only crash,drain --soak 5    # some row groups only; a 5-minute soak
    python bench/run.py --baseline ../before            # a third bot, "before": that checkout's app.py
    python bench/run.py --only faultmix --history-scopes  # every sandbox grants catch-up's scopes (Nonstop's on)

Every bot is a real subprocess (`bench/stock_bot.py` or `app.py`) with its own in-process Sandbox on
127.0.0.1. Prints one markdown table (stdout) and writes everything measured to bench/results/*.json.
See docs/benchmark.md for what each row means.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import answers, procs, report, scenarios, zero_loss  # noqa: E402
from bench.procs import BEFORE, FLOOR, KINDS, Lane, stop_all  # noqa: E402
from sandbox.testing import PROXY_VARS  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
# Row groups for --only (phase A runs its groups in parallel; the others run alone, one after another).
GROUPS = (
    "faults",
    "cycles",
    "mixed",
    "idle",
    "deadlinks",
    "outages",
    "crash",
    "drain",
    "faultmix",
    "soak",
    "burst",
    "command",
    "ledger",
    "answers",
)


@dataclass(frozen=True)
class Profile:
    quick: bool
    fault_lanes: int  # bot instances per kind measuring fault recovery, in parallel
    faults_per_lane: tuple[tuple[str, ...], ...]
    cap_s: float
    outage_s: float
    mixed_s: float
    mixed_rate: float
    mixed_final_wait_s: float
    burst: int
    burst_rounds: int
    idle_s: float
    max_cycles: int
    cycles_budget_s: float


# "eof" last: the stock client spins a core on an ended stream, which must not slow the other samples.
FAULT_ORDER = ("reset", "close_1001", "refresh", "silence", "outage", "eof")

FULL = Profile(
    quick=False,
    fault_lanes=5,
    faults_per_lane=tuple(FAULT_ORDER for _ in range(5)),  # 5 samples of every fault kind
    cap_s=90.0,
    outage_s=40.0,
    mixed_s=60.0,
    mixed_rate=3.0,
    mixed_final_wait_s=70.0,
    burst=300,
    burst_rounds=5,
    idle_s=90.0,
    max_cycles=100,
    cycles_budget_s=300.0,
)
QUICK = Profile(
    quick=True,
    fault_lanes=5,
    faults_per_lane=tuple((fault,) for fault in FAULT_ORDER),  # 1 sample of every fault kind, all at once
    cap_s=90.0,
    outage_s=15.0,
    mixed_s=20.0,
    mixed_rate=3.0,
    mixed_final_wait_s=60.0,
    burst=300,
    burst_rounds=2,
    idle_s=40.0,
    max_cycles=100,
    cycles_budget_s=60.0,
)

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def with_lanes(prefix: str, kinds: tuple[str, ...], body: Callable[[list[Lane]], Any]) -> Any:
    """Start one lane per kind, run body(lanes), always stop them."""
    started: list[Lane] = []
    try:
        for kind in kinds:
            lane = Lane(kind, f"{prefix}-{kind}")
            started.append(lane)
            lane.start()
        return body(started)
    finally:
        for lane in started:
            lane.stop()


# --- phase A: everything slow, in parallel (each lane has its own sandbox) ------------------------------


def fault_lane(kind: str, index: int, faults: tuple[str, ...], plan: scenarios.FaultPlan) -> dict[str, Any]:
    # Real outages last any length. The same length in every lane would line up with the stock
    # client's fixed 10 s retry tick and report one lucky phase five times; stagger it per lane
    # (both bots get the same lengths).
    plan = dataclasses.replace(plan, outage_s=plan.outage_s + index * scenarios.OUTAGE_STAGGER_S)

    def body(lanes: list[Lane]) -> dict[str, Any]:
        return scenarios.fault_samples(lanes[0], list(faults), plan)

    return with_lanes(f"fault{index}", (kind,), body)


def mixed(profile: Profile, kinds: tuple[str, ...]) -> dict[str, Any]:
    return with_lanes(
        "mixed",
        kinds,
        lambda lanes: scenarios.mixed_run(lanes, profile.mixed_s, profile.mixed_rate, profile.mixed_final_wait_s),
    )


def cycles(kind: str, profile: Profile) -> dict[str, Any]:
    return with_lanes(
        "cycles",
        (kind,),
        lambda lanes: scenarios.reconnect_cycles(lanes[0], profile.max_cycles, profile.cycles_budget_s, profile.cap_s),
    )


# --- zero-loss rows (issue 9): one small job per row, see bench/zero_loss.py ----------------------------


def stop_row(how: str, kind: str) -> dict[str, Any]:
    env = {"NONSTOP_DRAIN_TIMEOUT": f"{zero_loss.DRAIN_TIMEOUT_S:g}"} if how == "term" else {}
    lane = Lane(kind, f"{how}-{kind}", env=env)  # the stock bot reads no NONSTOP_ setting
    try:
        lane.start()
        return zero_loss.stop_and_restart(lane, how)
    finally:
        lane.stop()


def fault_mix(zl: zero_loss.ZeroLossProfile, kinds: tuple[str, ...]) -> dict[str, Any]:
    return with_lanes("faultmix", kinds, lambda lanes: zero_loss.drive_mix(lanes, zl.mix_s, zl.seed))


def soak(zl: zero_loss.ZeroLossProfile, kind: str) -> dict[str, Any]:
    return with_lanes("soak", (kind,), lambda lanes: zero_loss.soak(lanes[0], zl.soak_min, zl.seed))


def zero_loss_jobs(
    zl: zero_loss.ZeroLossProfile, only: set[str], kinds: tuple[str, ...]
) -> dict[str, Callable[[], dict[str, Any]]]:
    jobs: dict[str, Callable[[], dict[str, Any]]] = {}
    for row, how in (("crash", "kill"), ("drain", "term")):
        if row in only:
            for kind in kinds:
                jobs[f"{row}/{kind}"] = lambda how=how, kind=kind: stop_row(how, kind)
    if "faultmix" in only:
        jobs["faultmix"] = lambda: fault_mix(zl, kinds)
    if "soak" in only and zl.soak_min > 0:  # Nonstop only; "before:soak" beside it with a baseline
        for kind in ("nonstop", BEFORE):
            if kind in kinds:
                jobs[report.before_key("soak") if kind == BEFORE else "soak"] = lambda kind=kind: soak(zl, kind)
    return jobs


def command_under_load(zl: zero_loss.ZeroLossProfile, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Both bots at once (each with its own sandbox): each try spends its time waiting on the stuck listeners."""

    def body(lanes: list[Lane]) -> dict[str, Any]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            futures = {lane.kind: pool.submit(zero_loss.command_under_load, lane, zl.command_tries) for lane in lanes}
            return {kind: future.result() for kind, future in futures.items()}

    return with_lanes("command", kinds, body)


def interleaved_bursts(label: str, lanes: dict[str, Lane], rounds: int, size: int) -> dict[str, dict[str, Any]]:
    """`rounds` bursts of `size` mentions per bot and per shape, one bot at a time, the bots taking turns so
    background load hits every bot alike; → {shape: {name: pooled bursts}}."""
    out: dict[str, dict[str, Any]] = {}
    for shape in scenarios.BURST_SHAPES:
        done: dict[str, list[dict[str, Any]]] = {name: [] for name in lanes}
        for i in range(rounds):
            for name, lane in lanes.items():
                done[name].append(scenarios.burst(lane, size, shape))
                say(f"  done: {label}/{name} {shape} round {i + 1}")
                time.sleep(2.0)
        out[shape] = {name: scenarios.pool_bursts(r) for name, r in done.items()}
    return out


def ledger_overhead(zl: zero_loss.ZeroLossProfile, burst_size: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Nonstop with its SQLite ledger and with memory://, bursts interleaved, one at a time, nothing else running
    (with a baseline, "before" with each too, as "before:sqlite" and "before:memory")."""
    urls = {"sqlite": "sqlite:///nonstop-ledger.sqlite3", "memory": "memory://"}  # sqlite: in the bot's directory
    bots = [("nonstop", backend) for backend in urls] + [(BEFORE, backend) for backend in urls if BEFORE in kinds]
    started: dict[str, Lane] = {}
    try:
        for kind, backend in bots:
            name = report.before_key(backend) if kind == BEFORE else backend
            lane = Lane(kind, f"ledger-{name.replace(':', '-')}", env={"NONSTOP_LEDGER": urls[backend]})
            started[name] = lane
            lane.start()
        return interleaved_bursts("ledger", started, zl.ledger_rounds, burst_size)
    finally:
        for lane in started.values():
            lane.stop()


def phase_zero_loss_quiet(
    profile: Profile, zl: zero_loss.ZeroLossProfile, only: set[str], kinds: tuple[str, ...], results: dict[str, Any]
) -> None:
    jobs = {
        "command": lambda: command_under_load(zl, kinds),
        "ledger": lambda: ledger_overhead(zl, profile.burst, kinds),
    }
    for name, fn in jobs.items():
        if name not in only:
            continue
        say(f"phase C: {name}, nothing else running")
        try:
            results["zero_loss"][name] = fn()
            say(f"  done: {name}")
        except Exception:
            say(f"  FAILED: {name}")
            results["errors"].append({"job": name, "traceback": traceback.format_exc()})
            results["notes"].append(f"job {name} failed (see the JSON's errors)")


def phase_a(
    profile: Profile, zl: zero_loss.ZeroLossProfile, only: set[str], kinds: tuple[str, ...], results: dict[str, Any]
) -> None:
    plan = scenarios.FaultPlan(cap_s=profile.cap_s, outage_s=profile.outage_s)
    jobs: dict[str, Callable[[], dict[str, Any]]] = {}
    for kind in kinds:
        for i, faults in enumerate(profile.faults_per_lane):
            jobs[f"faults/{kind}/{i}"] = lambda kind=kind, i=i, faults=faults: fault_lane(kind, i, faults, plan)
        jobs[f"cycles/{kind}"] = lambda kind=kind: cycles(kind, profile)
        jobs[f"deadlinks/{kind}"] = lambda kind=kind: with_lanes(
            "deadlinks", (kind,), lambda lanes: scenarios.dead_link_retries(lanes[0], cap_s=profile.cap_s)
        )
        jobs[f"outages/{kind}"] = lambda kind=kind: with_lanes(
            "outages", (kind,), lambda lanes: scenarios.short_outages(lanes[0])
        )
    jobs["mixed"] = lambda: mixed(profile, kinds)
    jobs["idle"] = lambda: with_lanes("idle", kinds, lambda lanes: scenarios.idle_cpu(lanes, profile.idle_s))
    jobs = {name: fn for name, fn in jobs.items() if name.split("/")[0] in only}
    jobs |= zero_loss_jobs(zl, only, kinds)
    if not jobs:
        return
    bots = sum(len(kinds) if name in ("mixed", "idle", "faultmix") else 1 for name in jobs)
    say(f"phase A: {len(jobs)} jobs in parallel ({bots} bot processes, each with its own sandbox)")
    raw: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {pool.submit(fn): name for name, fn in jobs.items()}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                raw[name] = future.result()
                say(f"  done: {name}")
            except Exception:
                say(f"  FAILED: {name}")
                results["errors"].append({"job": name, "traceback": traceback.format_exc()})
                results["notes"].append(f"job {name} failed (see the JSON's errors)")
    samples: dict[str, dict[str, list[float | None]]] = {kind: {} for kind in kinds}
    cpu: dict[str, dict[str, list[dict[str, float]]]] = {kind: {} for kind in kinds}
    for name, value in raw.items():
        if name.startswith("faults/"):
            kind = name.split("/")[1]
            for fault, values in value["samples"].items():
                samples[kind].setdefault(fault, []).extend(values)
            for fault, values in value.get("recovery_cpu", {}).items():
                cpu[kind].setdefault(fault, []).extend(values)
            results["notes"].extend(value["notes"])
        elif name.split("/")[0] in ("crash", "drain"):
            row, kind = name.split("/")
            results["zero_loss"].setdefault(row, {})[kind] = value
        elif name in ("faultmix", "soak", report.before_key("soak")):
            results["zero_loss"][name] = value
    results["faults"] = {  # empty when --only left the fault rows out
        kind: {fault: scenarios.stats(values) for fault, values in by_fault.items()}
        for kind, by_fault in samples.items()
    }
    results["recovery_cpu"] = cpu
    for name in ("mixed", "idle"):
        if name in raw:
            results[name] = raw[name]
    for prefix, key in (("deadlinks", "dead_links"), ("outages", "short_outages"), ("cycles", "cycles")):
        if all(f"{prefix}/{kind}" in raw for kind in KINDS):  # a baseline's missing one leaves the rest in
            results[key] = {kind: raw[f"{prefix}/{kind}"] for kind in kinds if f"{prefix}/{kind}" in raw}
    if "cycles" in results:
        for kind in results["cycles"]:
            c = results["cycles"][kind]
            if c["cycles"] < profile.max_cycles:
                results["notes"].append(
                    f"{kind}: {c['cycles']} of {profile.max_cycles} reset cycles fit in the "
                    f"{profile.cycles_budget_s:g} s budget (stopped by: {c['stopped_by']}); "
                    "threads/RSS are after those."
                )


# --- phase B: latency and idle CPU, with nothing else running -------------------------------------------


def phase_b(profile: Profile, kinds: tuple[str, ...], results: dict[str, Any]) -> None:
    """Ack latency: one burst per bot, one bot at a time, nothing else running; then the harness floor."""

    def body(lanes: list[Lane]) -> None:
        say(f"phase B: ack latency, {profile.burst_rounds} x {profile.burst} mentions per shape, one bot at a time")
        results["burst"] = interleaved_bursts(
            "burst", {lane.kind: lane for lane in lanes}, profile.burst_rounds, profile.burst
        )

    with_lanes("quiet", (*kinds, FLOOR), body)


def answer_jobs(profile: Profile) -> dict[str, Callable[[], Any]]:
    """The answer rows (issue 17), keyed by where their result goes in results["answers"]."""
    return {
        "at_the_limit/nonstop": lambda: answers.at_the_limit("nonstop"),
        "at_the_limit/stock": lambda: answers.at_the_limit("stock"),
        "http_503/nonstop": lambda: answers.failing_posts("nonstop", "http_503", answers.FAILING),
        "http_503/stock": lambda: answers.failing_posts("stock", "http_503", answers.FAILING),
        "internal_error/nonstop_history": lambda: answers.failing_posts(
            "nonstop", "internal_error", answers.UNSURE, answers.WITH_HISTORY
        ),
        "internal_error/nonstop_repost": lambda: answers.failing_posts("nonstop", "internal_error", answers.UNSURE),
        "internal_error/nonstop_skip": lambda: answers.failing_posts(
            "nonstop", "internal_error", answers.UNSURE, NONSTOP_UNSURE_ANSWER="skip"
        ),
        "internal_error/stock": lambda: answers.failing_posts("stock", "internal_error", answers.UNSURE),
        "crash_in_flight/nonstop_history": lambda: answers.crash_in_flight("nonstop"),
        "crash_in_flight/nonstop_no_history": lambda: answers.crash_in_flight("nonstop", answers.BENCH_CONFIG),
        "crash_in_flight/stock": lambda: answers.crash_in_flight("stock"),
        "replicas/one": lambda: answers.replicas_on_one_channel(1),
        "replicas/three": lambda: answers.replicas_on_one_channel(3),
        "burst": lambda: answers.burst_vs_floor(profile.burst_rounds + 1, profile.burst),
    }


def phase_answers(profile: Profile, results: dict[str, Any]) -> None:
    """One job at a time, nothing else running: the rows time answers (2 s elsewhere, a burst)."""
    for name, fn in answer_jobs(profile).items():
        say(f"phase D: answers {name}")
        try:
            value = fn()
        except Exception:
            say(f"  FAILED: answers {name}")
            results["errors"].append({"job": f"answers/{name}", "traceback": traceback.format_exc()})
            results["notes"].append(f"job answers/{name} failed (see the JSON's errors)")
            continue
        group, _, kind = name.partition("/")
        if kind:
            results["answers"].setdefault(group, {})[kind] = value
        else:
            results["answers"][group] = value


def row_groups(text: str | None) -> set[str]:
    """--only's comma-separated groups (all when not given); raises ValueError with the known ones."""
    if text is None:
        return set(GROUPS)
    chosen = {g.strip() for g in text.split(",") if g.strip()}
    unknown = chosen - set(GROUPS)
    if unknown or not chosen:
        raise ValueError(f"--only takes a comma-separated list of: {', '.join(GROUPS)} (got {text!r})")
    return chosen


def results_path(out: Path, started: dt.datetime, quick: bool) -> Path:
    """bench-<start>.json in `out`, with -2, -3... if a run started in the same second already wrote one (two
    runs side by side would otherwise overwrite each other's results)."""
    stem = f"bench-{started.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}"
    path, n = out / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = out / f"{stem}-{n}.json"
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter phases, no soak (about 3 min)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results")
    parser.add_argument(
        "--only", metavar="GROUPS", help=f"run only these row groups, comma-separated: {','.join(GROUPS)}"
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="minutes of the soak (default: 30 for the full run, none with --quick)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=zero_loss.MIX_SEED,
        help=f"the fault mix's and the soak's fault schedule (default: {zero_loss.MIX_SEED})",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help='a checkout of an earlier commit: its app.py runs as a third bot, "before", in every row with Nonstop',
    )
    parser.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="the idle CPU row's window (default: 90 for the full run, 40 with --quick); catch-up scans every 120 s",
    )
    parser.add_argument(
        "--history-scopes",
        action="store_true",
        help="grant every lane's bot token the *:history and *:read scopes manifest.yml asks for, so Nonstop's "
        "catch-up is on (the stock bot reads no history: the scopes change nothing for it)",
    )
    args = parser.parse_args(argv)
    procs.use_history_scopes(args.history_scopes)
    try:
        only = row_groups(args.only)
        if args.baseline is not None:
            procs.use_baseline(args.baseline)
    except ValueError as e:
        parser.error(str(e))
    kinds = (*KINDS, BEFORE) if args.baseline is not None else KINDS
    if args.soak is not None and args.soak < 0:
        parser.error("--soak takes minutes, 0 or more")
    if args.idle is not None and args.idle <= 0:
        parser.error("--idle takes seconds, more than 0")
    profile = QUICK if args.quick else FULL
    if args.idle is not None:
        profile = dataclasses.replace(profile, idle_s=args.idle)
    zl = zero_loss.QUICK if args.quick else zero_loss.FULL
    if args.soak is not None:
        zl = dataclasses.replace(zl, soak_min=args.soak)
    zl = dataclasses.replace(zl, seed=args.seed)
    for name in PROXY_VARS:  # the sandboxes are on 127.0.0.1; bots get a proxy-free env too
        os.environ.pop(name, None)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "argv": argv,
        "profile": asdict(profile),
        "zero_loss_profile": asdict(zl),
        "only": sorted(only),
        "history_scopes": args.history_scopes,
        "machine": report.machine(),
        "code": report.code_state(REPO),
        "notes": [],
        "errors": [],
        "zero_loss": {},
        "answers": {},
    }
    if args.baseline is not None:
        results["baseline"] = {"dir": str(procs.baseline())} | report.code_state(procs.baseline())
    try:
        phase_a(profile, zl, only, kinds, results)
        if "burst" in only:
            phase_b(profile, kinds, results)
        phase_zero_loss_quiet(profile, zl, only, kinds, results)
        if "answers" in only:
            phase_answers(profile, results)
    except KeyboardInterrupt:
        say("interrupted: killing every bot and sandbox")
        stop_all()
        os._exit(130)
    finally:
        stop_all()
    results["wall_s"] = time.monotonic() - T0
    text = report.render(results)
    results["table"] = text
    args.out.mkdir(parents=True, exist_ok=True)
    path = results_path(args.out, started, profile.quick)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(text)
    say(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
