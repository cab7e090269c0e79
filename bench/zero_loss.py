"""The zero-loss rows (issue 9): a crash, a drain past its deadline, a slash command under load, the cost of the
ledger, the fault mix, and the soak. Each function takes started `Lane`s and returns plain JSON-able dicts;
nothing here prints. What each row means, and how it is measured, is in docs/benchmark.md.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from bench.procs import Lane, history_scopes, links_wanted
from bench.scenarios import SETTLE_S, percentile
from sandbox.records import ConnectionInfo, Delivery, DeliveryRecord

MIX_SEED = 9  # the fault mix's and the soak's schedule unless bench/run.py --seed says otherwise


@dataclass(frozen=True)
class ZeroLossProfile:
    command_tries: int  # slash command under load: tries per bot
    ledger_rounds: int  # ledger overhead: bursts per ledger backend
    mix_s: float  # fault mix: how long mentions are sent
    soak_min: float  # soak: minutes of the fault mix (0: no soak)
    seed: int = MIX_SEED  # the fault mix's and the soak's fault schedule (bench/run.py --seed)


FULL = ZeroLossProfile(command_tries=8, ledger_rounds=5, mix_s=240.0, soak_min=30.0)
QUICK = ZeroLossProfile(command_tries=3, ledger_rounds=2, mix_s=45.0, soak_min=0.0)


def wait_links(lane: Lane, timeout: float = 30.0) -> None:
    """The bot's full set of links live (no age asked for: these rows are not about reconnecting)."""
    want = links_wanted(lane.kind)
    try:
        lane.sb.wait_until(
            lambda: len([c for c in lane.live() if c.state == "live"]) >= want, timeout=timeout, what="live links"
        )
    except TimeoutError:
        raise RuntimeError(f"{lane.name}: {want} live link(s) not within {timeout:g} s:\n{lane.log_tail()}") from None


def replies(lane: Lane, ds: list[Delivery]) -> dict[str, int]:
    """Bot replies per delivery (threaded under the mention), from one read of the bot's messages."""
    per_thread = Counter(c.params.get("thread_ts") for c in lane.sb.bot_messages())
    return {d.key: per_thread[d.ts] for d in ds}


def _all_acked(lane: Lane, ds: list[Delivery], timeout: float) -> None:
    keys = {d.key for d in ds}

    def acked() -> bool:
        return all(r.acked_at is not None for r in lane.sb.deliveries() if r.key in keys)

    lane.sb.wait_until(acked, timeout=timeout, what="every mention acked")


def wait_answers(lane: Lane, ds: list[Delivery], timeout: float, quiet_s: float = 4.0) -> None:
    """Until the replies to `ds` stop changing for `quiet_s` (every one answered or not): a restarted bot may
    still be running events again after the first process's last replies came in."""
    deadline = time.monotonic() + timeout
    last, changed_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(replies(lane, ds).values())
        if total != last:
            last, changed_at = total, time.monotonic()
        elif time.monotonic() - changed_at >= quiet_s:
            return
        time.sleep(0.2)


SETTLE_WAIT_S = 60.0  # the sandbox's last retry (compressed to 30 s) plus its ack deadlines, and a margin


def wait_settled(lanes: list[Lane], sent: dict[str, list[Delivery]], timeout: float = SETTLE_WAIT_S) -> None:
    """Until every delivery of what was sent to each lane is over (acked, or Slack gave up), within `timeout`."""
    deadline = time.monotonic() + timeout
    for lane in lanes:
        keys = {d.key for d in sent[lane.name]}
        with contextlib.suppress(TimeoutError):
            lane.sb.wait_until(
                lambda lane=lane, keys=keys: all(r.outcome != "pending" for r in lane.sb.deliveries() if r.key in keys),
                timeout=max(0.1, deadline - time.monotonic()),
                what="every delivery settled",
            )


# --- crash and drain ----------------------------------------------------------------------------------------

STOP_MENTIONS = 30
STOP_REPLY_S = 2.0  # chat.postMessage takes this long until the stop
# The harder moment for Nonstop in each row: a SIGKILL half-way through the replies cuts off every listener
# under way (each runs again after the restart: a double), and a SIGTERM at the last ack leaves most of the work
# still ahead when the drain deadline hits (it must wait in the ledger for the next start).
KILL_AFTER_S = 1.0  # after the last ack
DRAIN_TIMEOUT_S = 2.0  # NONSTOP_DRAIN_TIMEOUT for the drain row
LEFT_IN_LEDGER = re.compile(r"(\d+) acked event\(s\) did not finish")


def stop_and_restart(lane: Lane, how: str) -> dict[str, Any]:
    """30 mentions acked while replies take 2 s; SIGKILL 1 s after the last ack (`how="kill"`) or SIGTERM at
    the last ack (`how="term"`); then the same command again in the same working directory (for Nonstop: the
    same ledger file), replies fast now. Counts replies per mention once the restarted bot has settled."""
    if how not in ("kill", "term"):
        raise ValueError(how)
    wait_links(lane)
    sb = lane.sb
    sb.slow_api(STOP_REPLY_S, ["chat.postMessage"])
    ds = sb.mentions([f"ping {how} {i}" for i in range(STOP_MENTIONS)])
    _all_acked(lane, ds, timeout=30)
    if how == "kill":
        time.sleep(KILL_AFTER_S)
    proc = lane.proc
    assert proc is not None
    stopped_at = time.monotonic()
    if how == "kill":
        proc.kill()
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(DRAIN_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        code = None
    exit_s = time.monotonic() - stopped_at
    tss = {d.ts for d in ds}
    on_their_way = sum(1 for c in sb.calls("chat.postMessage") if c.params.get("thread_ts") in tss)
    left = LEFT_IN_LEDGER.search(lane.log_tail(50_000))
    sb.slow_api(0)
    lane.respawn()
    wait_links(lane)
    wait_answers(lane, ds, timeout=40)
    counts = replies(lane, ds)
    return {
        "signal": "SIGKILL" if how == "kill" else "SIGTERM",
        "mentions": len(ds),
        "exit_code": code,
        "exit_s": round(exit_s, 4),  # a SIGKILL takes milliseconds: 2 decimals printed them as 0.0 ms
        "replies_on_their_way": on_their_way,  # requests the first process had made before it was gone
        "left_in_ledger": int(left.group(1)) if left else None,
        "answered": sum(1 for n in counts.values() if n >= 1),
        "lost": sum(1 for n in counts.values() if n == 0),
        "doubled": sum(1 for n in counts.values() if n > 1),
    }


# --- a slash command under load -----------------------------------------------------------------------------

STUCK_LISTENERS = 12
STUCK_FOR_S = 8.0
COMMAND_DEADLINE_S = 3.0  # Slack's ack deadline for a slash command
COMMAND_WAIT_S = 5.0  # how long a try waits for the ack (a later one is kept as "late", for information)


def command_under_load(lane: Lane, tries: int) -> dict[str, Any]:
    """12 mentions whose replies hang for 8 s, then `/nonstop ping`: seconds from the command's envelope to
    the ack carrying `pong`. An ack after Slack's 3 s (or none) counts as never; its lateness is kept."""
    wait_links(lane)
    sb = lane.sb
    out: list[dict[str, Any]] = []
    for t in range(tries):
        sb.slow_api(STUCK_FOR_S, ["chat.postMessage"])
        ds = sb.mentions([f"ping stuck {t}.{i}" for i in range(STUCK_LISTENERS)])
        tss = {d.ts for d in ds}

        def stuck(tss: set[str | None] = tss) -> int:
            return sum(1 for c in sb.calls("chat.postMessage") if c.params.get("thread_ts") in tss)

        # All 12 waiting on Slack, or as many as the bot's pool lets start (the rest queue behind them).
        deadline, seen, grew_at = time.monotonic() + 5.0, -1, time.monotonic()
        while time.monotonic() < deadline:
            n = stuck()
            if n >= STUCK_LISTENERS:
                break
            if n != seen:
                seen, grew_at = n, time.monotonic()
            elif n > 0 and time.monotonic() - grew_at >= 1.0:
                break
            time.sleep(0.05)
        cmd = sb.slash_command("ping")
        try:
            ack = sb.wait_for_ack(cmd, timeout=COMMAND_WAIT_S)
        except TimeoutError:
            ack = None
        answered = ack is not None and "pong" in str(ack.payload)
        in_time = answered and ack is not None and not ack.late and ack.latency_s <= COMMAND_DEADLINE_S
        out.append({
            "stuck": stuck(),
            "ack_s": ack.latency_s if in_time and ack is not None else None,
            "any_ack_s": ack.latency_s if ack is not None else None,
            "pong": answered,
        })  # fmt: skip
        sb.slow_api(0)
        with contextlib.suppress(TimeoutError):  # the next try starts with no listener stuck
            sb.wait_until(lambda ds=ds: all(n >= 1 for n in replies(lane, ds).values()), STUCK_FOR_S + 20, "answered")
    times = [s["ack_s"] for s in out if s["ack_s"] is not None]
    return {
        "tries": tries,
        "samples": out,
        "in_time": len(times),
        "p50_s": percentile(times, 50) if len(times) == tries else None,
        "p99_s": percentile(times, 99) if len(times) == tries else None,
        "late_max_s": max((s["any_ack_s"] for s in out if s["any_ack_s"] is not None), default=None),
    }


# --- the fault mix ------------------------------------------------------------------------------------------

MIX_FAULTS = ("reset", "silence", "warning", "refresh", "outage")
MIX_TITLES = {
    "reset": "TCP reset",
    "silence": "every link silent",
    "warning": "disconnect warning",
    "refresh": "refresh_requested",
    "outage": "8 s outage of apps.connections.open",
}
MIX_EVERY_S = 0.5
MIX_GAP_S = (10.0, 20.0)
MIX_OUTAGE_S = 8.0
WITHIN_S = 5.0
# With --history-scopes: after Slack gave up on the last mention, catch-up's next periodic scan (every 120 s by
# default) may be that long away; wait for it (and its replies) before counting, or its recoveries count as lost.
CATCH_UP_WAIT_S = 150.0
CATCH_UP_METHODS = ("users.conversations", "conversations.history", "conversations.replies")  # its reads


def fault_schedule(seed: int, duration_s: float) -> list[tuple[float, str]]:
    """(seconds after the start, fault): one every 10 to 20 s, each kind once per five in a seeded order."""
    rng = random.Random(seed)
    out: list[tuple[float, str]] = []
    bag: list[str] = []
    at = rng.uniform(*MIX_GAP_S)
    while at < duration_s:
        if not bag:
            bag = list(MIX_FAULTS)
            rng.shuffle(bag)
        out.append((round(at, 2), bag.pop()))
        at += rng.uniform(*MIX_GAP_S)
    return out


def _mix_fault(lane: Lane, fault: str) -> None:
    sb = lane.sb
    if fault == "reset":
        sb.reset()
    elif fault == "silence":
        sb.silence()
    elif fault == "warning":
        sb.disconnect("warning")
    elif fault == "refresh":
        sb.disconnect("refresh_requested")
    elif fault == "outage":  # Slack's socket side goes down with it: every socket reset
        sb.outage(MIX_OUTAGE_S, mode="http_503", drop_connections=True, methods=("apps.connections.open",))
    else:
        raise ValueError(fault)


def drive_mix(
    lanes: list[Lane], duration_s: float, seed: int, tick: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Mentions every 0.5 s into every lane's sandbox, and the seeded faults at the same moments in all of them;
    then wait for every delivery's final outcome and count. `tick()` runs after each mention (the soak samples)."""
    for lane in lanes:
        wait_links(lane)
        if not lane.settle(SETTLE_S, SETTLE_S + 30):
            raise RuntimeError(f"{lane.name}: links not settled:\n{lane.log_tail()}")
    pending = fault_schedule(seed, duration_s)
    injected: list[dict[str, Any]] = []
    struck: list[tuple[float, str]] = []  # (monotonic, fault)
    outages: list[tuple[float, float]] = []
    sent: dict[str, list[Delivery]] = {lane.name: [] for lane in lanes}
    start = time.monotonic()
    for i in range(round(duration_s / MIX_EVERY_S)):
        pause = start + i * MIX_EVERY_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        while pending and pending[0][0] <= time.monotonic() - start:
            _, fault = pending.pop(0)
            at = time.monotonic()
            for lane in lanes:
                _mix_fault(lane, fault)
            struck.append((at, fault))
            if fault == "outage":
                outages.append((at, at + MIX_OUTAGE_S))
            injected.append({"fault": fault, "at_s": round(at - start, 2)})
        for lane in lanes:
            sent[lane.name].append(lane.sb.mention(f"ping mix {i}"))
        if tick is not None:
            tick()
    wait_settled(lanes, sent)
    settled_s = time.monotonic() - start
    if history_scopes():  # the stock bot reads no history: nothing to wait for there
        wait_all_answered([lane for lane in lanes if lane.kind != "stock"], sent, CATCH_UP_WAIT_S)
    for lane in lanes:
        wait_answers(lane, sent[lane.name], timeout=15)
    return {
        "mentions": len(sent[lanes[0].name]),
        "duration_s": duration_s,
        "settled_at_s": round(settled_s, 1),
        "counted_at_s": round(time.monotonic() - start, 1),
        "seed": seed,
        "faults": injected,
        "by_kind": {lane.kind: mix_outcome(lane, sent[lane.name], outages, struck, start) for lane in lanes},
    }


def wait_all_answered(lanes: list[Lane], sent: dict[str, list[Delivery]], timeout: float) -> None:
    """Until every mention in every lane has a reply, or `timeout` s."""
    deadline = time.monotonic() + timeout
    for lane in lanes:
        ds = sent[lane.name]
        with contextlib.suppress(TimeoutError):
            lane.sb.wait_until(
                lambda lane=lane, ds=ds: all(n >= 1 for n in replies(lane, ds).values()),
                timeout=max(0.1, deadline - time.monotonic()),
                what="every mention answered",
            )


def deliverable_at(created: float, outages: list[tuple[float, float]]) -> float:
    """When Slack could first deliver an event: when it was sent, or, if that was during an outage of Slack's
    own, when the outage ended (no bot can hold a link to a Slack that is down)."""
    for begin, end in outages:
        if begin <= created < end:
            return end
    return created


def last_fault(created: float, struck: list[tuple[float, str]]) -> str:
    """The fault most recently injected before `created` ("none" before the first)."""
    before = [fault for at, fault in struck if at <= created]
    return before[-1] if before else "none"


def _routable_at(conn: ConnectionInfo, at: float) -> bool:
    """Whether "Slack" could route to `conn` at `at`: hello sent, no disconnect sent, not closed yet."""
    ended = min((t for t in (conn.disconnect_at, conn.closed_at) if t is not None), default=None)
    return conn.hello_at is not None and conn.hello_at <= at and (ended is None or at < ended)


def _silent_at(conn: ConnectionInfo, at: float) -> bool:
    return conn.silenced_at is not None and conn.silenced_at <= at


def _timeline(conn: ConnectionInfo, start: float) -> dict[str, Any]:
    """One connection's life in seconds from the run's start (None: never happened)."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 2)

    return {
        "id": conn.id,
        "hello_s": rel(conn.hello_at),
        "silenced_s": rel(conn.silenced_at),
        "disconnect_s": rel(conn.disconnect_at),
        "closed_s": rel(conn.closed_at),
        "how": conn.close_how or conn.disconnect_reason,
    }


def attempts_seen(
    record: DeliveryRecord, conns: dict[str, ConnectionInfo], start: float, struck: list[tuple[float, str]]
) -> dict[str, Any]:
    """One delivery's attempts as Slack made them: for each, when (seconds from the run's start), the retry
    number, whether the connection it was written to was silent (dead), and what Slack could pick from at that
    moment: connections it could route to, and how many of those were silent. Explains a lost or late event."""
    out: list[dict[str, Any]] = []
    for a in record.attempts:
        conn = conns.get(a.connection_id) if a.connection_id else None
        routable = [c for c in conns.values() if _routable_at(c, a.sent_at)]
        out.append({
            "at_s": round(a.sent_at - start, 2),
            "retry": a.retry_attempt,
            "held_s": round(a.sent_at - a.started_at, 2),
            "to": "never sent" if conn is None else ("silent" if _silent_at(conn, a.sent_at) else "live"),
            "routable": len(routable),
            "silent": sum(1 for c in routable if _silent_at(c, a.sent_at)),
        })  # fmt: skip
    created = record.attempts[0].started_at if record.attempts else start
    return {"outcome": record.outcome, "after": last_fault(created, struck), "attempts": out}


def mix_outcome(
    lane: Lane,
    ds: list[Delivery],
    outages: list[tuple[float, float]],
    struck: list[tuple[float, str]],
    start: float = 0.0,
) -> dict[str, Any]:
    sb = lane.sb
    records = {r.key: r for r in sb.deliveries()}
    conns = {c.id: c for c in sb.connections()}
    first: dict[str, float] = {}
    count: Counter[str] = Counter()
    for call in sb.bot_messages():
        ts = call.params.get("thread_ts")
        if ts:
            count[str(ts)] += 1
            first[str(ts)] = min(first.get(str(ts), call.at), call.at)
    delays: list[float] = []
    outcomes: Counter[str] = Counter()
    late_after: Counter[str] = Counter()  # not answered within 5 s (lost included), by the fault before
    lost_after: Counter[str] = Counter()
    lost_detail: list[dict[str, Any]] = []  # every lost one's attempts (attempts_seen)
    late_detail: list[dict[str, Any]] = []  # every one answered, but later than 5 s
    unacked: list[float] = []  # delays of those answered without an acked delivery
    for d in ds:
        record = records[d.key]
        outcomes[record.outcome] += 1
        if not record.attempts:
            continue
        created = record.attempts[0].started_at
        if d.ts in first:
            delays.append(first[d.ts] - deliverable_at(created, outages))
        if d.ts not in first or delays[-1] > WITHIN_S:
            late_after[last_fault(created, struck)] += 1
        if d.ts not in first:
            lost_after[last_fault(created, struck)] += 1
            seen = attempts_seen(record, conns, start, struck)
            lost_detail.append(seen | {"created_at_s": round(created - start, 2)})
        elif record.outcome != "acked":  # answered, no attempt acked: catch-up found it (or an ack came too late)
            unacked.append(round(delays[-1], 2))
        elif delays[-1] > WITHIN_S:
            late_detail.append(attempts_seen(record, conns, start, struck) | {"delay_s": round(delays[-1], 2)})
    n = len(ds)
    within = sum(1 for v in delays if v <= WITHIN_S)
    return {
        "mentions": n,
        "answered": sum(1 for d in ds if count[d.ts or ""] >= 1),
        "lost": sum(1 for d in ds if count[d.ts or ""] == 0),
        "doubled": sum(1 for d in ds if count[d.ts or ""] > 1),
        "within_5s": within,
        "within_5s_pct": 100 * within / n if n else None,
        "delay_p50_s": percentile(delays, 50),
        "delay_p99_s": percentile(delays, 99),
        "delay_max_s": max(delays, default=None),
        "delivery_outcomes": dict(outcomes),
        "late_after": dict(late_after),
        "lost_after": dict(lost_after),
        "lost_detail": lost_detail,
        "late_detail": late_detail,
        "answered_unacked": len(unacked),
        "answered_unacked_delay_max_s": max(unacked, default=None),
        "scans_at_s": [round(c.at - start, 1) for c in sb.calls("users.conversations")],  # catch-up's scans
        "catch_up_calls": {m: len(sb.calls(m)) for m in CATCH_UP_METHODS},
        "connections": [_timeline(c, start) for c in conns.values()],
        "retried": sum(1 for d in ds if len(records[d.key].attempts) > 1),
        "bot_alive": lane.alive(),
        "restarts": lane.restarts,
    }


# --- the soak -----------------------------------------------------------------------------------------------


def _usage(proc: psutil.Process, minute: float) -> dict[str, float]:
    with proc.oneshot():
        return {
            "minute": round(minute, 1),
            "rss_mb": proc.memory_info().rss / 2**20,
            "threads": proc.num_threads(),
            "fds": proc.num_fds(),
        }


def soak(lane: Lane, minutes: float, seed: int) -> dict[str, Any]:
    """The fault mix for `minutes`, sampling the bot's RSS, threads and open file descriptors every minute
    (first/last/max from the first minute on; the sample before any traffic is kept in `samples`)."""
    wait_links(lane)
    proc = lane.ps()
    samples: list[dict[str, float]] = []
    start = time.monotonic()

    def tick() -> None:
        minute = (time.monotonic() - start) / 60
        if minute >= len(samples):
            with contextlib.suppress(psutil.Error):
                samples.append(_usage(proc, minute))

    tick()
    mix = drive_mix([lane], minutes * 60, seed, tick)
    with contextlib.suppress(psutil.Error):
        samples.append(_usage(proc, (time.monotonic() - start) / 60))

    def summary(key: str) -> dict[str, float]:
        # From the first minute on: before traffic the thread pools have not started their threads yet.
        values = [s[key] for s in samples if s["minute"] >= 1] or [s[key] for s in samples]
        return {"first": values[0], "last": values[-1], "max": max(values)} if values else {}

    return {
        "minutes": minutes,
        "same_process": lane.alive() and lane.pid == proc.pid,
        "samples": samples,
        "rss_mb": summary("rss_mb"),
        "threads": summary("threads"),
        "fds": summary("fds"),
        "mix": mix,
    }
