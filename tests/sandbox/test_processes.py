"""Several bot processes on one app: faults aimed at one process, retries routed to any connection."""

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.testing import TEST_CONFIG, clean_env, connections_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_config():
    return SandboxConfig(**{**TEST_CONFIG.__dict__, "retry_delays_s": (0.0, 0.3, 0.3)})


@contextlib.contextmanager
def bot_processes(sb: Sandbox, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = clean_env() | {
        "SANDBOX_API_URL": sb.api_url,
        "SLACK_APP_TOKEN": sb.app_token,
        "SLACK_BOT_TOKEN": sb.bot_token,
    }
    procs = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-m", "tests.sandbox.pong_process"], cwd=ROOT, env=env))
        sb.wait_for_connections(count, timeout=30)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def owners(sb: Sandbox, procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    """connection id -> pid, for every connection the processes hold open now."""
    return {conn: proc.pid for proc in procs for conn in connections_of(sb, proc.pid)}


def test_a_fault_aimed_at_one_process_hits_only_its_connections(sandbox):
    with bot_processes(sandbox, 3) as procs:
        by_conn = sandbox.wait_until(lambda: (o := owners(sandbox, procs)) and len(o) == 3 and o, what="3 owners")
        assert sorted(by_conn.values()) == sorted(p.pid for p in procs)  # one connection per process
        target = procs[1]
        (hit,) = connections_of(sandbox, target.pid)
        assert sandbox.eof(conn=connections_of(sandbox, target.pid)) == [hit]
        live = {c.id for c in sandbox.connections(live_only=True)}
        assert live == set(by_conn) - {hit}
        # the stock client notices the ended stream by itself and comes back on a new connection
        sandbox.wait_until(
            lambda: [c for c in connections_of(sandbox, target.pid) if c != hit], timeout=30, what="reconnect"
        )
        d = sandbox.mention("still answered")
        sandbox.wait_for_message("pong", thread_ts=d.ts)


def test_retries_are_routed_to_any_process_of_the_app(sandbox):
    with bot_processes(sandbox, 3) as procs:
        by_conn = sandbox.wait_until(lambda: (o := owners(sandbox, procs)) and len(o) == 3 and o, what="3 owners")
        sandbox.lose_first_acks(1.0)
        ds = [sandbox.mention(f"twice {i}") for i in range(12)]
        for d in ds:
            sandbox.wait_for_ack(d, timeout=15)
        records = [sandbox.delivery(d) for d in ds]
    first = [by_conn[r.attempts[0].connection_id] for r in records]
    retry = [by_conn[r.attempts[1].connection_id] for r in records]
    assert all(r.acks_lost == 1 for r in records)
    assert len(set(retry)) >= 2  # retries spread over the processes ...
    assert any(a != b for a, b in zip(first, retry, strict=True))  # ... often to another one than the first
    # stock bots have no shared dedupe: the first attempt and the retry are both answered
    sandbox.wait_until(lambda: all(n == 2 for n in sandbox.handled_counts().values()), what="two replies each")
