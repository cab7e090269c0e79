"""Replicas: three stock Bolt bots vs three Nonstop replicas on one Redis, under the same faults, side by side.

    python bench/replicas.py            # about 2-3 minutes on 2 cores

For each kind: one sandbox (one Slack app), three bot processes with the same tokens, and three phases:

1. lost acks: a third of the first acks lost on the wire, 60 mentions (Slack retries on any connection);
2. SIGKILL: 30 mentions waiting on a 2 s chat.postMessage, all acked, then one replica is SIGKILLed
   (and started again, as an orchestrator would);
3. rolling deploy: mentions at 2/s while each replica is replaced (start a new one, SIGTERM the old).

Each mention is then counted from the sandbox's record of the bot's replies: answered once, lost (no
reply) or doubled (more than one). Rolling deploy also reports the share answered within 5 s. Stock
bots run with their defaults; Nonstop with its production defaults plus `NONSTOP_LEDGER=redis://…`
on a throwaway `redis-server`. Retries come after 0 / 2 / 5 s instead of Slack's 0 / ~60 / ~300 s so
that the run can wait for every outcome (the protocol is the same; see docs/benchmark.md).
Prints a markdown table and writes bench/results/replicas-*.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procs import bot_env, command  # noqa: E402
from sandbox import Sandbox, SandboxConfig  # noqa: E402
from sandbox.records import Delivery  # noqa: E402
from sandbox.testing import connections_of  # noqa: E402
from tests.redisserver import REDIS_SERVER, RedisServer  # noqa: E402

CONFIG = SandboxConfig(retry_delays_s=(0.0, 2.0, 5.0), rate_limits=False)  # limits: as measured before
KINDS = ("stock", "nonstop")
REPLICAS = 3


class Cluster:
    """Three bot processes of one kind on one sandbox (and, for Nonstop, one Redis)."""

    def __init__(self, kind: str, sb: Sandbox, redis: RedisServer | None, workdir: Path) -> None:
        self.kind, self.sb, self.redis, self.workdir = kind, sb, redis, workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        self._count += 1
        name = f"{self.kind}-{self._count}"
        env = bot_env(self.sb)
        if self.redis is not None:
            env |= {"NONSTOP_LEDGER": self.redis.url, "NONSTOP_REPLICA_NAME": name}
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            command(self.kind), cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        self.procs.append(proc)
        self.wait(lambda: connections_of(self.sb, proc.pid), "the new replica connected")
        return proc

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60) -> None:
        self.sb.wait_until(check, timeout=timeout, what=what)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def outcomes(sb: Sandbox, ds: list[Delivery]) -> dict[str, int]:
    per_thread = Counter(c.params.get("thread_ts") for c in sb.bot_messages())
    counts = Counter(min(per_thread[d.ts], 2) for d in ds)
    return {"answered once": counts[1], "lost": counts[0], "doubled": counts[2], "mentions": len(ds)}


def settle(sb: Sandbox, ds: list[Delivery], quiet_s: float = 6.0, timeout: float = 90) -> None:
    """Until every delivery has its final outcome and no reply came for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = all(sb.delivery(d).outcome != "pending" for d in ds)
        replies = len(sb.bot_messages())
        if replies != last:
            last, since = replies, time.monotonic()
        if done and time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def lost_acks(cluster: Cluster) -> dict[str, Any]:
    sb = cluster.sb
    sb.lose_first_acks(1 / 3)
    ds = sb.mentions([f"ping {i}" for i in range(60)])
    settle(sb, ds)
    sb.lose_first_acks(0)
    return outcomes(sb, ds)


def sigkill(cluster: Cluster) -> dict[str, Any]:
    sb = cluster.sb
    sb.slow_api(2.0, ["chat.postMessage"])
    ds = sb.mentions([f"ping {i}" for i in range(30)])
    cluster.wait(lambda: all(sb.delivery(d).acked_at is not None for d in ds), "all 30 acked")
    victim = max(
        (p for p in cluster.procs if p.poll() is None), key=lambda p: len(connections_of(sb, p.pid))
    )  # a replica holding connections, so it holds acked events too
    killed_at = time.monotonic()
    victim.kill()
    victim.wait(10)
    sb.slow_api(0)
    cluster.spawn()  # as an orchestrator would
    settle(sb, ds, quiet_s=15.0, timeout=120)  # longer than Nonstop's lease (10 s): its takeover counts too
    result = outcomes(sb, ds)
    answers = [c.at for c in sb.bot_messages() if c.params.get("thread_ts") in {d.ts for d in ds}]
    result["last answer after the kill (s)"] = round(max(answers) - killed_at, 1) if answers else None
    return result


def rolling(cluster: Cluster) -> dict[str, Any]:
    sb = cluster.sb
    sent: list[tuple[Delivery, float]] = []
    stop = threading.Event()

    def mentions() -> None:
        n = 0
        while not stop.wait(0.5):
            sent.append((sb.mention(f"ping {n}"), time.monotonic()))
            n += 1

    thread = threading.Thread(target=mentions, daemon=True)
    thread.start()
    try:
        for old in [p for p in cluster.procs if p.poll() is None][:REPLICAS]:
            time.sleep(12)  # ~24 mentions per step: ~100 over the deploy, so one lost or late one shows
            cluster.spawn()
            old.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(30)
        time.sleep(12)
    finally:
        stop.set()
        thread.join(10)
    ds = [d for d, _ in sent]
    settle(sb, ds)
    result = outcomes(sb, ds)
    first_reply: dict[str, float] = {}
    for c in sb.bot_messages():
        first_reply.setdefault(str(c.params.get("thread_ts")), c.at)
    fast = sum(1 for d, at in sent if d.ts in first_reply and first_reply[d.ts] - at <= 5.0)
    result["answered within 5 s"] = f"{100 * fast / max(1, len(sent)):.1f} %"
    return result


PHASES: list[tuple[str, Callable[[Cluster], dict[str, Any]]]] = [
    ("a third of first acks lost, 60 mentions", lost_acks),
    ("SIGKILL a replica with 30 acked mentions under way", sigkill),
    ("rolling deploy under 2 mentions/s", rolling),
]


@contextlib.contextmanager
def cluster_of(kind: str) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-replicas-{kind}-")))
        sb = stack.enter_context(Sandbox(CONFIG))
        redis = None
        if kind == "nonstop":
            redis = RedisServer(workdir)
            redis.start()
            stack.callback(redis.kill)
        cluster = Cluster(kind, sb, redis, workdir)
        stack.callback(cluster.stop)
        for _ in range(REPLICAS):
            cluster.spawn()
        yield cluster


def main() -> int:
    if REDIS_SERVER is None:
        print("bench/replicas.py needs redis-server (Debian package redis-server)", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for title, phase in PHASES:
            with cluster_of(kind) as cluster:  # a fresh app per phase: one phase's leftovers never blur the next
                results.setdefault(title, {})[kind] = phase(cluster)
    lines = [
        "| replicas (3 each, same faults) | stock Bolt: once / lost / doubled "
        "| Nonstop on Redis: once / lost / doubled |",
        "|---|---|---|",
    ]
    for title, by_kind in results.items():
        cells = []
        for kind in KINDS:
            r = by_kind[kind]
            cell = f"{r['answered once']} / {r['lost']} / {r['doubled']} of {r['mentions']}"
            extra = [f"{k} {v}" for k, v in r.items() if k not in ("answered once", "lost", "doubled", "mentions")]
            cells.append(cell + (f" ({', '.join(extra)})" if extra else ""))
        lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"replicas-{stamp}.json").write_text(
        json.dumps({"elapsed_s": round(time.monotonic() - started, 1), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
