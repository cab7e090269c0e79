"""The measurements. Each takes started `Lane`s and returns plain JSON-able dicts; nothing here prints."""

from __future__ import annotations

import contextlib
import gc
import glob
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.procs import ASYNC_FLOOR, FLOOR, Lane
from sandbox import DeliveryRecord

FAULTS = ("reset", "eof", "silence", "close_1001", "refresh", "outage")
FAULT_TITLES = {
    "reset": "TCP reset (RST), no close frame",
    "eof": "connection just ends (FIN/EOF), no close frame",
    "silence": "half-open link (silence)",
    "close_1001": "server close frame 1001",
    "refresh": "disconnect refresh_requested",
    "outage": "Web API outage, then back",
}
SETTLE_S = 11.0  # links older than Nonstop's NONSTOP_HEALTHY_AFTER (10 s): a bot in its steady state


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median_or_none(values: list[float | None]) -> float | None:
    """Median where None means "never" (sorted after every number); None if the median is "never"."""
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    if not ordered:
        return None
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    a, b = ordered[mid - 1], ordered[mid]
    return None if a is None or b is None else (a + b) / 2


# --- time to a new live connection -----------------------------------------------------------------


OUTAGE_STAGGER_S = 2.3  # lane i's outage lasts outage_s + i * this


@dataclass(frozen=True)
class FaultPlan:
    cap_s: float = 90.0  # a sample that has no new connection by then counts as "never"
    outage_s: float = 40.0


def _ready(lane: Lane, notes: list[str]) -> None:
    """A live bot whose links are past their young age; respawn a bot that is dead or deaf."""
    for _ in range(3):
        if lane.alive() and lane.wait_live(20) and lane.settle(SETTLE_S, SETTLE_S + 30):
            return
        notes.append(f"{lane.name}: bot not live before a sample; restarted it")
        lane.respawn()
    raise RuntimeError(f"{lane.name}: bot never became live:\n{lane.log_tail()}")


def _inject(lane: Lane, fault: str, plan: FaultPlan) -> float:
    """Apply `fault` to every connection of the lane; return the moment to measure from (monotonic)."""
    sb = lane.sb
    if fault == "reset":
        t0 = time.monotonic()
        sb.reset()
    elif fault == "eof":
        t0 = time.monotonic()
        sb.eof()
    elif fault == "silence":
        t0 = time.monotonic()
        sb.silence()
    elif fault == "close_1001":
        t0 = time.monotonic()
        sb.close(1001, "going away")
    elif fault == "refresh":
        t0 = time.monotonic()
        sb.disconnect("refresh_requested")
    elif fault == "outage":
        sb.outage(3600, mode="refused", drop_connections=True)
        time.sleep(plan.outage_s)
        sb.end_outage()
        sb.wait_until(lambda: not sb.outage_active(), timeout=10, what="the API back")
        t0 = time.monotonic()  # "Slack is back"
    else:
        raise ValueError(fault)
    return t0


def fault_samples(lane: Lane, faults: list[str], plan: FaultPlan) -> dict[str, Any]:
    """One sample per entry of `faults`, in order, on one lane. Seconds to the first new live connection,
    and the bot's CPU time meanwhile (the stock client spins on an ended stream)."""
    samples: dict[str, list[float | None]] = {}
    cpu: dict[str, list[dict[str, float]]] = {}
    notes: list[str] = []
    for fault in faults:
        _ready(lane, notes)
        known = {c.id for c in lane.sb.connections()}
        proc = lane.ps()
        cpu_before = _cpu_seconds(proc.pid, proc)[0]
        t0 = _inject(lane, fault, plan)
        conn = lane.wait_new_live(known, plan.cap_s)
        with contextlib.suppress(psutil.Error):
            wall = time.monotonic() - t0
            if fault != "outage":  # an outage's own wait is not recovery
                used = _cpu_seconds(proc.pid, proc)[0] - cpu_before
                cpu.setdefault(fault, []).append({"cpu_s": used, "wall_s": wall})
        value = None if conn is None or conn.hello_at is None else max(0.0, conn.hello_at - t0)
        samples.setdefault(fault, []).append(value)
        if value is None:
            notes.append(f"{lane.name}: no new connection within {plan.cap_s:g} s after {fault}; restarted the bot")
            lane.respawn()
    return {"samples": samples, "recovery_cpu": cpu, "notes": notes}


# --- mixed fault run --------------------------------------------------------------------------------

MIXED_FAULTS: tuple[tuple[float, str], ...] = (
    (0.10, "reset"),
    (0.25, "lose_acks"),
    (0.40, "silence"),
    (0.60, "refresh"),
    (0.75, "reset"),
    (0.85, "lose_acks"),
)
LOST_ACKS_PER_FAULT = 3


def _mixed_fault(lane: Lane, fault: str) -> None:
    sb = lane.sb
    if fault == "reset":
        sb.reset()
    elif fault == "silence":
        sb.silence()
    elif fault == "refresh":
        sb.disconnect("refresh_requested")
    elif fault == "lose_acks":
        sb.lose_acks(LOST_ACKS_PER_FAULT)
    else:
        raise ValueError(fault)


def mixed_run(lanes: list[Lane], duration_s: float, rate_per_s: float, final_wait_s: float) -> dict[str, Any]:
    """The same stream of mentions and the same faults, at the same moments, into every lane's sandbox."""
    for lane in lanes:
        _ready(lane, [])
    n = round(duration_s * rate_per_s)
    schedule = sorted((round(frac * n), fault) for frac, fault in MIXED_FAULTS)
    start = time.monotonic()
    injected: list[dict[str, Any]] = []
    for i in range(n):
        due = start + i / rate_per_s
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        while schedule and schedule[0][0] <= i:
            _, fault = schedule.pop(0)
            for lane in lanes:
                _mixed_fault(lane, fault)
            injected.append({"fault": fault, "at_s": round(time.monotonic() - start, 2), "after_event": i})
        for lane in lanes:
            lane.sb.mention(f"ping {i}")
    sent_s = time.monotonic() - start
    # Slack's retries (compressed, see BENCH_CONFIG) decide each delivery's fate: wait for all of them.
    deadline = time.monotonic() + final_wait_s
    for lane in lanes:
        remaining = max(0.1, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            lane.sb.wait_until(
                lambda lane=lane: all(r.outcome != "pending" for r in lane.sb.deliveries()),
                timeout=remaining,
                what="every delivery settled",
            )
    time.sleep(5.0)  # replies of the last acks
    return {
        "events": n,
        "duration_s": duration_s,
        "rate_per_s": rate_per_s,
        "sent_in_s": round(sent_s, 2),
        "faults": injected,
        "by_kind": {lane.kind: _mixed_outcome(lane) for lane in lanes},
    }


def _mixed_outcome(lane: Lane) -> dict[str, Any]:
    sb = lane.sb
    counts = sb.handled_counts()
    records = {r.event_id: r for r in sb.deliveries() if r.event_id}
    first_reply: dict[str, float] = {}
    for call in sb.bot_messages():
        ts = call.params.get("thread_ts")
        if ts and str(ts) not in first_reply:
            first_reply[str(ts)] = call.at
    delays: list[float] = []
    for _event_id, record in records.items():
        ts = record.envelope["payload"]["event"].get("ts")
        if ts in first_reply and record.attempts:
            delays.append(first_reply[ts] - record.attempts[0].started_at)  # from when Slack had it
    outcomes: dict[str, int] = {}
    for record in records.values():
        outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
    return {
        "answered_once": sum(1 for v in counts.values() if v == 1),
        "lost": sum(1 for v in counts.values() if v == 0),
        "duplicated": sum(1 for v in counts.values() if v > 1),
        "extra_replies": sum(v - 1 for v in counts.values() if v > 1),
        "delivery_outcomes": outcomes,
        "retried_deliveries": sum(1 for r in records.values() if len(r.attempts) > 1),
        "reply_delay_p50_s": percentile(delays, 50),
        "reply_delay_p99_s": percentile(delays, 99),
        "reply_delay_max_s": max(delays) if delays else None,
        "answered_within_5s": sum(1 for d in delays if d <= 5.0),
        "connections_opened": len(sb.connections()),
        "bot_alive": lane.alive(),
    }


# --- ack latency for a burst --------------------------------------------------------------------------


def _ack_latency(record: DeliveryRecord) -> float | None:
    """Sending the acked attempt → receiving its ack (the sandbox's own `Ack.latency_s`)."""
    if record.acked_at is None:
        return None
    for attempt in record.attempts:
        if attempt.envelope_id == record.ack_envelope_id:
            return record.acked_at - attempt.sent_at
    return None


ONE_BY_ONE = "one_by_one"
AT_ONCE = "at_once"
BURST_SHAPES = (ONE_BY_ONE, AT_ONCE)
"""How a burst reaches the bot. `one_by_one`: one control call per mention, back to back (each envelope
written as soon as the harness asks, a few hundred per second: the shape the issue-9 targets were set
on). `at_once`: every envelope written in one turn of the sandbox's loop (`Sandbox.mentions`), the
bot finds them all in its socket at once; then even a bare client's last ack waits for the other 299."""

BURST_TITLES = {ONE_BY_ONE: "one by one, back to back", AT_ONCE: "all written at once"}


@contextlib.contextmanager
def harness_collector_off() -> Iterator[None]:
    """The harness's own collector off while a burst is sent and acked, after a full collection.

    The sandbox that writes the envelopes and reads the acks runs in this process, and a full collection
    here (every earlier burst's records are live: 13-21 ms by the third burst, measured with gc.callbacks)
    stopped its loop in the middle of a burst, so the acks waiting in its socket were read that much late
    and counted against the bot. It fell on the same burst of the ledger rows in each of six probe runs
    (the third: SQLite's second), so it moved one backend's p99 and not the other's.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def burst(lane: Lane, count: int, shape: str = AT_ONCE, timeout_s: float = 60.0) -> dict[str, Any]:
    if lane.kind not in (FLOOR, ASYNC_FLOOR):
        _ready(lane, [])
    elif not lane.wait_live(20):
        raise RuntimeError(f"{lane.name}: the floor client did not connect:\n{lane.log_tail()}")
    sb = lane.sb
    before = {r.key for r in sb.deliveries()}
    texts = [f"ping burst {i}" for i in range(count)]
    keys: set[str] = set()

    def records() -> list[DeliveryRecord]:
        return [r for r in sb.deliveries() if r.key in keys]

    with harness_collector_off():
        start = time.monotonic()
        deliveries = sb.mentions(texts) if shape == AT_ONCE else [sb.mention(text) for text in texts]
        sent_s = time.monotonic() - start
        keys = {d.key for d in deliveries} - before
        with contextlib.suppress(TimeoutError):
            sb.wait_until(lambda: all(r.acked_at is not None for r in records()), timeout=timeout_s, what="all acked")

    def replied() -> int:
        counts = sb.handled_counts()
        return sum(1 for d in deliveries if d.event_id and counts.get(d.event_id, 0) > 0)

    answered_s: float | None = None
    with contextlib.suppress(TimeoutError):
        sb.wait_until(lambda: replied() >= len(deliveries), timeout=timeout_s, what="all answered")
        answered_s = time.monotonic() - start
    recs = records()
    latencies = [v for v in (_ack_latency(r) for r in recs) if v is not None]
    return {
        "count": count,
        "shape": shape,
        "latencies_s": latencies,
        "sent_in_s": round(sent_s, 3),
        "acked": len(latencies),
        "acked_on_first_attempt": sum(1 for r in recs if r.acked_at is not None and r.ack_envelope_id == (
            r.attempts[0].envelope_id if r.attempts else None)),
        "ack_p50_s": percentile(latencies, 50),
        "ack_p99_s": percentile(latencies, 99),
        "ack_max_s": max(latencies) if latencies else None,
        "all_answered_after_s": answered_s,
    }  # fmt: skip


def pool_bursts(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Several bursts of one bot: percentiles over every ack of every round, plus each round's own."""
    latencies = [v for r in rounds for v in r["latencies_s"]]
    answered = [r["all_answered_after_s"] for r in rounds]
    return {
        "count": rounds[0]["count"],
        "shape": rounds[0]["shape"],
        "rounds": len(rounds),
        "acked": sum(r["acked"] for r in rounds),
        "sent": sum(r["count"] for r in rounds),
        "acked_on_first_attempt": sum(r["acked_on_first_attempt"] for r in rounds),
        "ack_p50_s": percentile(latencies, 50),
        "ack_p99_s": percentile(latencies, 99),
        "ack_max_s": max(latencies) if latencies else None,
        "round_p99_s": [r["ack_p99_s"] for r in rounds],
        "round_sent_in_s": [r["sent_in_s"] for r in rounds],
        "all_answered_after_s": median_or_none(answered),
        "round_all_answered_after_s": answered,
    }


# --- idle CPU -------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int, fallback: psutil.Process) -> tuple[float, str]:
    """CPU time of every thread of `pid`: from /proc/<pid>/task/*/schedstat (nanoseconds) where Linux
    offers it, else psutil's user+system (10 ms ticks: too coarse for an idle process over a minute)."""
    tasks = glob.glob(f"/proc/{pid}/task/*/schedstat")
    if tasks:
        total = 0
        for path in tasks:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(path).read_text().split()[0])
        return total / 1e9, "schedstat"
    times = fallback.cpu_times()
    return times.user + times.system, "cpu_times"


def tree_cpu_seconds(proc: psutil.Process) -> tuple[float, str]:
    """`_cpu_seconds` of a bot and of every process it started (the split prototype is two)."""
    with contextlib.suppress(psutil.Error):
        procs = [proc, *proc.children(recursive=True)]
        total, source = 0.0, "schedstat"
        for p in procs:
            used, source = _cpu_seconds(p.pid, p)
            total += used
        return total, source
    return 0.0, "gone"


def idle_cpu(lanes: list[Lane], seconds: float, by: Callable[[Lane], str] = lambda lane: lane.kind) -> dict[str, Any]:
    """CPU % of one core used by each bot (its process and any it started) over `seconds` with healthy,
    idle connections; keyed by `by(lane)`."""
    for lane in lanes:
        _ready(lane, [])
    procs = {by(lane): lane.ps() for lane in lanes}
    start = {kind: tree_cpu_seconds(p)[0] for kind, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    out: dict[str, Any] = {}
    for kind, p in procs.items():
        end, source = tree_cpu_seconds(p)
        used = end - start[kind]
        out[kind] = {
            "cpu_percent": 100 * used / wall,
            "cpu_seconds": used,
            "window_s": round(wall, 1),
            "source": source,
        }
    for lane in lanes:  # Nonstop's catch-up scans in the window (each begins with users.conversations)
        out[by(lane)]["catch_up_scans"] = sum(1 for c in lane.sb.calls("users.conversations") if c.at >= t0)
    return out


# --- every link silent: where Slack's retries land -------------------------------------------------------

DEAD_LINK_SAMPLE = 20  # events whose first attempt went into a dead socket


def _acked_on(record: DeliveryRecord) -> int | None:
    for attempt in record.attempts:
        if attempt.envelope_id == record.ack_envelope_id:
            return attempt.retry_attempt
    return None


def dead_link_retries(lane: Lane, sample: int = DEAD_LINK_SAMPLE, cap_s: float = 90.0) -> dict[str, Any]:
    """Every link of the bot goes silent (its network path dies; Slack goes on routing to the dead sockets
    for `silent_link_alive_s`, 900 s). Time to the first new live connection; then, 5 s later, mentions
    until `sample` of them had their first attempt sent into a dead socket: on which of Slack's retries
    was each answered (acked)?"""
    _ready(lane, [])
    sb = lane.sb
    dead = {c.id for c in sb.connections() if c.closed_at is None}
    t0 = time.monotonic()
    sb.silence()
    conn = lane.wait_new_live(dead, cap_s)
    replaced_after = None if conn is None or conn.hello_at is None else max(0.0, conn.hello_at - t0)
    if conn is None:
        return {"replaced_after_s": None, "sample": 0, "first_retry": 0, "by_second_retry": 0}
    time.sleep(5.0)  # both bots settle: spare links (Nonstop) are up within a second of the replacement
    counted_by_slack = len(lane.live())
    live_here = len([c for c in lane.live() if c.id not in dead])
    into_dead: list[Any] = []
    batch = 0
    while len(into_dead) < sample and batch < 20:
        batch += 1
        for d in sb.mentions([f"ping dead {batch}.{i}" for i in range(25)]):
            sb.wait_until(lambda d=d: sb.delivery(d).attempts[0].connection_id is not None, what="first attempt")
            if sb.delivery(d).attempts[0].connection_id in dead and len(into_dead) < sample:
                into_dead.append(d)
    deadline = sb.config.ack_deadline_s

    def settled(d: Any) -> bool:  # acked, or the second retry is over too
        r = sb.delivery(d)
        if r.acked_at is not None or r.outcome != "pending":
            return True
        second = [a for a in r.attempts if a.retry_attempt == 2]
        return bool(second) and time.monotonic() > second[0].started_at + deadline + 0.5

    for d in into_dead:
        with contextlib.suppress(TimeoutError):
            sb.wait_until(lambda d=d: settled(d), timeout=60, what="first and second retries over")
    acked_on = [_acked_on(sb.delivery(d)) for d in into_dead]
    return {
        "replaced_after_s": replaced_after,
        "slack_counted": counted_by_slack,
        "live_here": live_here,
        "sample": len(into_dead),
        "first_retry": sum(1 for n in acked_on if n == 1),
        "by_second_retry": sum(1 for n in acked_on if n is not None and n <= 2),
        "acked_on": acked_on,
    }


# --- short outages: the worst of five ----------------------------------------------------------------------

SHORT_OUTAGES = 5
SHORT_OUTAGE_S = 8.0


def short_outages(lane: Lane, rounds: int = SHORT_OUTAGES, outage_s: float = SHORT_OUTAGE_S) -> dict[str, Any]:
    """`apps.connections.open` answers 503 for `outage_s` while every link is reset; from Slack's return to
    a new live connection, each round, and how many `apps.connections.open` calls the bot made meanwhile."""
    sb = lane.sb
    back_after: list[float | None] = []
    opens_per_s: list[float] = []
    for _ in range(rounds):
        _ready(lane, [])
        known = {c.id for c in sb.connections()}
        before = len(sb.calls("apps.connections.open"))
        t_start = time.monotonic()
        sb.outage(3600, mode="http_503", drop_connections=True)
        time.sleep(outage_s)
        sb.end_outage()
        t0 = time.monotonic()  # "Slack is back"
        opens_per_s.append((len(sb.calls("apps.connections.open")) - before) / (t0 - t_start))
        conn = lane.wait_new_live(known, 90.0)
        back_after.append(None if conn is None or conn.hello_at is None else max(0.0, conn.hello_at - t0))
        if conn is None:
            lane.respawn()
    worst = None if any(v is None for v in back_after) else max(v for v in back_after if v is not None)
    return {
        "back_after_s": back_after,
        "worst_s": worst,
        "opens_per_s": opens_per_s,
        "max_opens_per_s": max(opens_per_s),
    }


# --- reconnect cycles: threads and memory -----------------------------------------------------------------


def reconnect_cycles(lane: Lane, max_cycles: int, budget_s: float, cap_s: float) -> dict[str, Any]:
    """sb.reset() every connection, wait for a new live one (deadline `cap_s`), repeat; bounded in time."""
    _ready(lane, [])
    p = lane.ps()
    threads_before, rss_before = p.num_threads(), p.memory_info().rss
    start = time.monotonic()
    cycles = 0
    stopped_by = "cycles"
    while cycles < max_cycles:
        remaining = budget_s - (time.monotonic() - start)
        if remaining <= 0:
            stopped_by = "time budget"
            break
        known = {c.id for c in lane.sb.connections()}
        lane.sb.reset()
        if lane.wait_new_live(known, min(cap_s, max(remaining, 1.0))) is None:
            stopped_by = "no reconnect within the deadline" if remaining > cap_s else "time budget"
            break
        cycles += 1
    elapsed = time.monotonic() - start
    lane.wait_live(cap_s)
    time.sleep(2.0)
    threads_after, rss_after = p.num_threads(), p.memory_info().rss
    new_conns = [c for c in lane.sb.connections() if c.hello_at is not None and c.hello_at >= start]
    return {
        "cycles": cycles,
        "reconnects": len(new_conns),
        "elapsed_s": round(elapsed, 1),
        "stopped_by": stopped_by,
        "budget_s": budget_s,
        "threads_before": threads_before,
        "threads_after": threads_after,
        "rss_before_mb": rss_before / 2**20,
        "rss_after_mb": rss_after / 2**20,
    }


def stats(values: list[float | None]) -> dict[str, Any]:
    nums = [v for v in values if v is not None]
    return {
        "samples": values,
        "median_s": median_or_none(values),
        "never": len(values) - len(nums),
        "min_s": min(nums) if nums else None,
        "max_s": max(nums) if nums else None,
        "mean_s": statistics.fmean(nums) if nums else None,
    }


Runner = Callable[[], dict[str, Any]]
