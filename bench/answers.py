"""The answer rows (issue 17): the way out under Slack's rate limits, its bad moments, a crash, replicas, a burst.

Each function takes what it needs (lanes it starts itself, since the rows differ in the sandbox's rules
and the bot's scopes) and returns plain JSON-able dicts; nothing here prints. Every answer is counted from
the sandbox's record of what Slack holds (`Sandbox.bot_messages()`, posts whose answer was lost included):
answered (at least one reply in the mention's thread), lost (none), twice (more than one). What each row
means is in docs/benchmark.md.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.procs import ASYNC_FLOOR, BENCH_CONFIG, Lane
from bench.replicas import Cluster
from bench.scenarios import AT_ONCE, burst, percentile
from bench.zero_loss import wait_links
from sandbox import Sandbox, SandboxConfig
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES
from sandbox.records import Delivery
from tests.redisserver import RedisServer

SORRY = "Sorry, something went wrong"
LIMITED = replace(BENCH_CONFIG, rate_limits=True)  # Slack's: 1 post a second per channel, bursts of 4
HISTORY = (*BOT_SCOPES.split(","), *HISTORY_SCOPES)
WITH_HISTORY = replace(BENCH_CONFIG, bot_scopes=HISTORY)
BUSY = 40  # mentions at once in one channel, at the posting limit
ELSEWHERE = 5  # meanwhile, mentions in another channel
FAILING = 60  # mentions while every 4th post fails with 503
UNSURE = 40  # mentions while every 4th post is answered 500 after posting
IN_FLIGHT = 30  # replies in flight at a SIGKILL
REPLICA_MENTIONS = 40  # mentions in one channel for three replicas on Redis


def count(sb: Sandbox, ds: list[Delivery]) -> dict[str, Any]:
    per_thread = Counter(c.params.get("thread_ts") for c in sb.bot_messages())
    counts = [per_thread[d.ts] for d in ds]
    return {
        "mentions": len(ds),
        "answered": sum(1 for n in counts if n >= 1),
        "lost": sum(1 for n in counts if n == 0),
        "twice": sum(1 for n in counts if n > 1),
        "apologies": sum(1 for c in sb.bot_messages() if SORRY in str(c.params.get("text"))),
        "ratelimited": sum(1 for c in sb.calls("chat.postMessage") if c.status == 429),
    }


def settle(sb: Sandbox, ds: list[Delivery], timeout: float, quiet_s: float = 5.0) -> float | None:
    """Wait until every mention is answered and nothing new is posted for `quiet_s` (or `timeout`); return when
    the last of them was first answered, from the first mention's first delivery (None: not all answered)."""
    deadline = time.monotonic() + timeout
    last, changed_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        posts = len(sb.calls())
        if posts != last:
            last, changed_at = posts, time.monotonic()
        elif time.monotonic() - changed_at >= quiet_s and (
            count(sb, ds)["lost"] == 0 or time.monotonic() - changed_at >= 3 * quiet_s
        ):
            break  # all answered and quiet, or quiet for long: what is lost stays lost
        time.sleep(0.25)
    return _all_answered_after(sb, ds)


def _all_answered_after(sb: Sandbox, ds: list[Delivery]) -> float | None:
    first: dict[str, float] = {}
    for c in sb.bot_messages():
        ts = c.params.get("thread_ts")
        if ts and c.answered_at is not None:
            first[ts] = min(first.get(ts, c.answered_at), c.answered_at)
    starts = [sb.delivery(d).attempts[0].sent_at for d in ds if sb.delivery(d).attempts]
    if not starts or any(d.ts not in first for d in ds):
        return None
    return max(first[d.ts] for d in ds) - min(starts)


def _latencies(sb: Sandbox, ds: list[Delivery]) -> list[float | None]:
    """From each mention's first delivery to its first reply, None for one never answered."""
    out: list[float | None] = []
    posts = [c for c in sb.bot_messages() if c.answered_at is not None]
    for d in ds:
        replies = [c.answered_at for c in posts if c.params.get("thread_ts") == d.ts]
        record = sb.delivery(d)
        out.append(min(replies) - record.attempts[0].sent_at if replies and record.attempts else None)  # type: ignore[type-var, operator]
    return out


@contextlib.contextmanager
def lane(kind: str, name: str, config: SandboxConfig = BENCH_CONFIG, **env: str) -> Iterator[Lane]:
    started = Lane(kind, name, config=config, env=env)
    try:
        started.start()
        if kind != ASYNC_FLOOR:
            wait_links(started)
        yield started
    finally:
        started.stop()


# --- the rows --------------------------------------------------------------------------------------------


def at_the_limit(kind: str) -> dict[str, Any]:
    """40 mentions at once in one channel at the posting limit; meanwhile 5 mentions in another channel."""
    with lane(kind, f"limit-{kind}", LIMITED) as ln:
        sb = ln.sb
        busy = sb.mentions([f"ping busy {i}" for i in range(BUSY)])
        elsewhere = []
        for i in range(ELSEWHERE):  # one a second from 2 s on, while the busy channel owes its answers
            time.sleep(2.0 if i == 0 else 1.0)
            elsewhere.append(sb.mention(f"ping elsewhere {i}", channel="C0ELSEWHERE"))
        after = settle(sb, busy + elsewhere, timeout=120)
        late = _latencies(sb, elsewhere)
        return {
            **count(sb, busy),
            "all_answered_after_s": _all_answered_after(sb, busy),
            "settled_after_s": after,
            "elsewhere": count(sb, elsewhere) | {"latencies_s": late},
        }


def failing_posts(
    kind: str, mode: str, mentions: int, config: SandboxConfig = BENCH_CONFIG, **env: str
) -> dict[str, Any]:
    """`mentions` at once while every 4th chat.postMessage meets `mode` (http_503, internal_error, cut)."""
    with lane(kind, f"{mode}-{kind}", config, **env) as ln:
        ln.sb.fail_calls(every=4, mode=mode)
        ds = ln.sb.mentions([f"ping {i}" for i in range(mentions)])
        after = settle(ln.sb, ds, timeout=120)
        faults = sum(1 for c in ln.sb.calls("chat.postMessage") if c.fault == mode)
        return count(ln.sb, ds) | {"all_answered_after_s": after, "faults": faults}


def crash_in_flight(kind: str, config: SandboxConfig = WITH_HISTORY) -> dict[str, Any]:
    """30 replies in flight (Slack holds each post, its answer 2 s away), SIGKILL, the same command again."""
    with lane(kind, f"inflight-{kind}", config) as ln:
        sb = ln.sb
        sb.slow_api(2.0, ["chat.postMessage"])
        ds = [sb.mention(f"ping {i}", channel=f"C0FLIGHT{i:03d}") for i in range(IN_FLIGHT)]
        sb.wait_until(lambda: len(sb.calls("chat.postMessage")) >= IN_FLIGHT, timeout=60, what="30 posts sent")
        ln.kill()
        sb.wait_until(lambda: len(sb.bot_messages()) >= IN_FLIGHT, timeout=10, what="Slack holds the 30")
        sb.slow_api(0)
        ln.respawn()
        wait_links(ln)
        settle(sb, ds, timeout=90, quiet_s=8.0)
        return count(sb, ds) | {"posted_after_restart": len(sb.calls("chat.postMessage")) - IN_FLIGHT}


def replicas_on_one_channel(processes: int) -> dict[str, Any]:
    """Nonstop replicas on one Redis (or one process alone) answering 40 mentions in one channel at the limit."""
    with tempfile.TemporaryDirectory(prefix="bench-answer-replicas-") as tmp, Sandbox(LIMITED) as sb:
        redis = RedisServer(Path(tmp)) if processes > 1 else None
        if redis is not None:
            redis.start()
        cluster = Cluster("nonstop", sb, redis, Path(tmp))
        try:
            for _ in range(processes):
                cluster.spawn()
            ds = sb.mentions([f"ping {i}" for i in range(REPLICA_MENTIONS)])
            after = settle(sb, ds, timeout=150)
            return count(sb, ds) | {"processes": processes, "all_answered_after_s": after}
        finally:
            cluster.stop()
            if redis is not None:
                redis.kill()


def burst_vs_floor(rounds: int, size: int = 300) -> dict[str, Any]:
    """`size` mentions at once, posting limits off: every reply posted after how long, Nonstop beside a bare
    asyncio client (and the stock bot), bursts interleaved."""
    kinds = ("nonstop", ASYNC_FLOOR, "stock")
    out: dict[str, list[float | None]] = {k: [] for k in kinds}
    with contextlib.ExitStack() as stack:
        lanes = {k: stack.enter_context(lane(k, f"answer-burst-{k}")) for k in kinds}
        for _ in range(rounds):
            for k, ln in lanes.items():
                out[k].append(burst(ln, size, AT_ONCE)["all_answered_after_s"])
                time.sleep(2.0)
    medians = {k: percentile([v for v in vs if v is not None], 50) for k, vs in out.items()}
    return {"size": size, "rounds": out, "median_s": medians}
