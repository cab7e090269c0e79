"""Cluster mode (issue 10): real bot processes sharing a real, throwaway redis-server, against the sandbox.

Leases and heartbeats are short here (NONSTOP_LEASE=1.5) so that a dead replica's events move within
seconds; the behaviour is the production one, at a faster pace. Every wait is on an observed event.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from sandbox import Sandbox, SandboxConfig
from sandbox.records import Delivery
from sandbox.testing import TEST_CONFIG, connections_of, raw_connect
from tests.botprocess import BotProcess, bot_env, run_bot, run_once
from tests.integration.answers import every_one_answered
from tests.redisserver import REDIS_SERVER, RedisServer
from tests.tools import require

LEASE = "1.5"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # Room for a replica to start (sign in, connect) between an event's first attempt and its retry.
    return TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "ack_deadline_s": 6.0})


def replica_env(sb: Sandbox, redis: RedisServer, name: str, **overrides: str) -> dict[str, str]:
    return bot_env(
        sb,
        **{
            "NONSTOP_LEDGER": redis.url,
            "NONSTOP_LEASE": LEASE,
            "NONSTOP_REPLICA_NAME": name,
            "NONSTOP_HANDLER_THREADS": "8",
        }
        | overrides,
    )


@contextlib.contextmanager
def replicas(
    sb: Sandbox, redis: RedisServer, n: int, tmp: Path, name: str = "r", **overrides: str
) -> Iterator[list[BotProcess]]:
    with contextlib.ExitStack() as stack:
        bots = []
        for i in range(n):
            env = replica_env(sb, redis, f"{name}{i + 1}", **overrides)
            bots.append(stack.enter_context(run_bot(env, workdir=_dir(tmp, f"{name}{i + 1}"))))
        yield bots


def live_links(sb: Sandbox) -> list[object]:
    return [c for c in sb.connections(live_only=True) if c.state == "live"]


def all_settled(sb: Sandbox, ds: list[Delivery], timeout: float = 60) -> None:
    """Every event acked by some replica: Slack sends none of them again."""
    sb.wait_until(lambda: all(sb.delivery(d).acked_at is not None for d in ds), timeout=timeout, what="all acked")


def test_three_replicas_answer_each_mention_once_though_slack_retries_on_any_connection(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    with replicas(sandbox, redis_server, 3, tmp_path) as bots:
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 6, timeout=30, what="6 links")
        sandbox.lose_first_acks(1 / 3)
        ds = sandbox.mentions([f"ping {i}" for i in range(60)])
        all_settled(sandbox, ds)
        counts = every_one_answered(sandbox, ds)
        retried = [d for d in ds if len(sandbox.delivery(d).attempts) > 1]
        assert retried, "some first acks were lost, so Slack retried those events"
        assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
        handled = [int(b.log.count("suppressed a duplicate delivery")) for b in bots]
        assert sum(handled) >= len(retried)


def test_a_killed_replicas_acked_mentions_are_answered_by_the_others(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Four listeners at a time: with 2 s each, the last of the 30 would start only ~14 s later, long after
    # the others are up, so some are still waiting when it dies, however slow the machine.
    with replicas(sandbox, redis_server, 1, tmp_path, name="doomed", NONSTOP_HANDLER_THREADS="4") as (doomed,):
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 2, timeout=30, what="the first replica's links")
        sandbox.slow_api(2.0, ["chat.postMessage"])
        # In 30 channels: the answer path keeps at most a burst (4) of one channel's posts in the air.
        ds = [sandbox.mention(f"ping {i}", channel=f"C0DOOM{i:03d}") for i in range(30)]
        all_settled(sandbox, ds)  # all 30 acked by this replica: Slack will never send them again
        with replicas(sandbox, redis_server, 2, tmp_path, name="other") as others:
            sandbox.wait_until(lambda: len(live_links(sandbox)) >= 6, timeout=30, what="the others' links")
            doomed.proc.kill()
            doomed.proc.wait(10)
            mid_way = {c.params.get("thread_ts") for c in sandbox.calls("chat.postMessage")}
            assert len(mid_way) < 30, "some of the 30 had not started when the replica died"
            counts = every_one_answered(sandbox, ds, timeout=30)
            taken = "".join(o.log for o in others)
            assert "another replica acked and could not finish" in taken
    doubled = {d.ts for d in ds if counts[d.key] > 1}
    assert all(n <= 2 for n in counts.values()), counts
    assert doubled <= mid_way, "only a listener cut off mid-way may run twice"


class Mentions:
    """A mention every `every_s` seconds from a thread of the test's, until stopped; with `commands`, a
    `/nonstop ping` after each one too."""

    def __init__(self, sb: Sandbox, every_s: float, *, commands: bool = False) -> None:
        self.sb = sb
        self.every_s = every_s
        self.with_commands = commands
        self.sent: list[Delivery] = []
        self.commands: list[Delivery] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every_s):
            self.sent.append(self.sb.mention(f"ping {n}"))
            if self.with_commands:
                self.commands.append(self.sb.slash_command("ping"))
            n += 1

    def __enter__(self) -> Mentions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_rolling_deploy_loses_and_doubles_nothing(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        env = {name: replica_env(sandbox, redis_server, name) for name in ("old1", "old2", "old3")}
        old = [stack.enter_context(run_bot(env[name], workdir=_dir(tmp_path, name))) for name in env]
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 6, timeout=30, what="3 replicas live")
        with Mentions(sandbox, 0.5, commands=True) as mentions:
            for i, leaving in enumerate(old):
                sent = len(mentions.sent)
                sandbox.wait_until(lambda sent=sent: len(mentions.sent) >= sent + 2, what="mentions meanwhile")
                name = f"new{i + 1}"
                new = stack.enter_context(
                    run_bot(replica_env(sandbox, redis_server, name), workdir=_dir(tmp_path, name))
                )
                sandbox.wait_until(
                    lambda new=new: connections_of(sandbox, new.pid), timeout=30, what="new replica live"
                )
                new.wait_for_log(r"connection #1: connected")
                leaving.signal(signal.SIGTERM)
                assert leaving.wait_exit(timeout=30) == 0
            sent = len(mentions.sent)
            sandbox.wait_until(lambda: len(mentions.sent) >= sent + 4, what="mentions after the last switch")
        ds = mentions.sent
        all_settled(sandbox, ds)
        counts = every_one_answered(sandbox, ds)
        for command in mentions.commands:  # never redelivered by Slack: each must be answered in its ack, in time
            ack = sandbox.wait_for_ack(command, timeout=10)
            assert not ack.late
            assert ack.payload is not None
            assert "pong" in str(ack.payload.get("text"))
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
    assert len(mentions.commands) >= 10


def _dir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir(parents=True)
    return path


def test_redis_killed_and_restarted_empty_costs_no_answer(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    with replicas(sandbox, redis_server, 2, tmp_path) as bots:
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 4, timeout=30, what="2 replicas live")
        with Mentions(sandbox, 0.5) as mentions:
            sandbox.wait_until(lambda: len(mentions.sent) >= 2, what="mentions before")
            redis_server.kill()
            for bot in bots:
                bot.wait_for_log(r"Redis unusable", timeout=20)
            gone_at = len(mentions.sent)
            sandbox.wait_until(lambda: len(mentions.sent) >= gone_at + 20, timeout=30, what="10 s without Redis")
            redis_server.start()
            for bot in bots:
                bot.wait_for_log(r"Redis usable again", timeout=20)
            back_at = len(mentions.sent)
            sandbox.wait_until(lambda: len(mentions.sent) >= back_at + 4, what="mentions after")
        ds = mentions.sent
        all_settled(sandbox, ds)
        counts = every_one_answered(sandbox, ds)
        assert all(bot.proc.poll() is None for bot in bots), "no replica exits"
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}


def test_six_replicas_share_slacks_ten_connections(sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path) -> None:
    with replicas(sandbox, redis_server, 6, tmp_path, NONSTOP_CONNECTIONS="2") as bots:
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 10, timeout=60, what="10 links")
        for bot in bots:
            bot.wait_for_log(r"connection #1: connected", timeout=30)
        ds = sandbox.mentions([f"ping {i}" for i in range(20)])
        counts = every_one_answered(sandbox, ds)
        refused = [c for c in sandbox.connections() if c.disconnect_reason == "too_many_websockets"]
        assert refused == [], "Slack never refused a connection"
        assert len(live_links(sandbox)) == 10
        # Each replica's view is as fresh as the last heartbeats (every third of a lease): ask until it settles.
        deadline = time.monotonic() + 30
        while True:
            status = sandbox.mention("status")
            text = str(sandbox.wait_for_message(thread_ts=status.ts).params.get("text", ""))
            if "6 replica(s) hold 10 of Slack's 10 connections" in text and "envelope(s) handled" in text:
                break
            assert time.monotonic() < deadline, text
        for name in ("r1", "r2", "r3", "r4", "r5", "r6"):
            assert f"• {name}" in text
    assert all(n == 1 for n in counts.values()), counts


def test_another_process_on_the_same_app_token_is_called_out(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    with (
        raw_connect(sandbox),  # a forgotten laptop with the same app token
        replicas(sandbox, redis_server, 1, tmp_path, NONSTOP_LEASE="0.3") as (bot,),
    ):
        bot.wait_for_log(r"connection #2: connected", timeout=30)
        # Each new link's hello carries Slack's count: reconnect until the surplus has lasted.
        deadline = time.monotonic() + 60
        while "GHOST CONNECTIONS" not in bot.log:
            assert time.monotonic() < deadline, bot.log[-3000:]
            hellos = len(bot.wait_for_log(r": connected in"))
            sandbox.reset(conn=connections_of(sandbox, bot.pid)[:1])
            # A reset slot link is replaced (a new hello); a reset spare may not be, when none is needed.
            sandbox.wait_until(
                lambda n=hellos: bot.log.count(": connected in") > n or len(connections_of(sandbox, bot.pid)) >= 2,
                timeout=30,
                what="the bot's links back",
            )
        line = bot.wait_for_log(r"GHOST CONNECTIONS")[0]
        # The replica may hold spare links meanwhile (Slack counts one it does not hold): one ghost either way.
        assert re.search(
            r"Slack counts \d+ connection\(s\) for this app, the replicas on this Redis hold \d+: 1 more", line
        )
        assert bot.log.count("GHOST CONNECTIONS") == 1, "once"


def test_an_eleventh_replica_waits_as_a_standby_and_connects_when_one_leaves(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Ten older replicas holding one connection each, as the membership records them (their
    # heartbeats far in the future); only the eleventh is a real process.
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    for i in range(10):
        info = {"name": f"old{i}", "wish": 1, "started_at": time.time() - 600 + i, "handled": 0}
        client.zadd("nonstop:members", {f"old{i}": 10**13})
        client.hset("nonstop:member", f"old{i}", json.dumps(info))
        client.hset("nonstop:held", f"old{i}", 1)
    with replicas(sandbox, redis_server, 1, tmp_path) as (bot,):
        bot.wait_for_log(r"standby: Slack's 10 connections for this app are all taken by the 10 other replica")
        bot.wait_for_log(r"cluster mode on redis://127\.0\.0\.1:\d+/0 as replica r1: this replica may hold 0")
        assert connections_of(sandbox, bot.pid) == []
        client.zrem("nonstop:members", "old3")  # one leaves
        client.hdel("nonstop:member", "old3")
        client.hdel("nonstop:held", "old3")
        bot.wait_for_log(r"no longer a standby")
        bot.wait_for_log(r"connection #1: connected")
        sandbox.wait_until(lambda: len(connections_of(sandbox, bot.pid)) == 1, what="its one connection")
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
    client.close()


def test_a_stopping_replica_hands_what_it_could_not_finish_to_the_others(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    with replicas(sandbox, redis_server, 1, tmp_path, name="leaving", NONSTOP_DRAIN_TIMEOUT="1") as (leaving,):
        sandbox.wait_until(lambda: len(live_links(sandbox)) >= 2, timeout=30, what="its links")
        sandbox.slow_api(2.0, ["chat.postMessage"])
        ds = sandbox.mentions([f"ping {i}" for i in range(20)])
        all_settled(sandbox, ds)
        with replicas(sandbox, redis_server, 1, tmp_path, name="staying") as (staying,):
            sandbox.wait_until(lambda: connections_of(sandbox, staying.pid), timeout=30, what="the other live")
            leaving.signal(signal.SIGTERM)
            assert leaving.wait_exit(timeout=30) == 0
            exited = sandbox.now()
            leaving.wait_for_log(r"did not finish here; handed over to the other replicas through Redis")
            # Calls made before it exited: its own listeners (the other takes over only once it let go).
            mid_way = {c.params.get("thread_ts") for c in sandbox.calls("chat.postMessage") if c.at < exited}
            sandbox.slow_api(0)
            staying.wait_for_log(r"another replica acked and could not finish")
            counts = every_one_answered(sandbox, ds)
    doubled = {d.ts for d in ds if counts[d.key] > 1}
    assert doubled <= mid_way, "only a listener cut off mid-way by the drain deadline may run twice"


def test_a_password_in_the_ledger_url_works_and_never_shows(sandbox: Sandbox, tmp_path: Path) -> None:
    require(REDIS_SERVER is not None, "redis-server (Debian package redis-server)")
    secret = "s3cret-Pa55word"
    server = RedisServer(_dir(tmp_path, "redis"), password=secret)
    server.start()
    try:
        with replicas(sandbox, server, 1, tmp_path) as (bot,):
            bot.wait_for_log(r"cluster mode on redis://…(redacted)?@127\.0\.0\.1:\d+/0 ")
            d = sandbox.mention("ping")
            sandbox.wait_for_message(thread_ts=d.ts)
            assert server.command("HLEN", "nonstop:member").startswith(b":1"), "it registered in Redis"
            assert secret not in bot.log
        wrong = replica_env(sandbox, server, "w") | {
            "NONSTOP_LEDGER": f"redis://:wrong-{secret}@127.0.0.1:{server.port}/0"
        }
        result = run_once(wrong)
        assert result.returncode == 78, result.stdout + result.stderr
        output = result.stdout + result.stderr
        assert "refused this client" in output, output
        assert "check the password" in output, output
        assert secret not in output
        assert "Traceback" not in output
    finally:
        server.kill()


def test_rediss_verifies_the_certificate_against_the_extra_ca_it_is_given(sandbox: Sandbox, tmp_path: Path) -> None:
    require(REDIS_SERVER is not None, "redis-server (Debian package redis-server)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certs = _dir(tmp_path, "certs")
    chain, key, ca_file = certs / "chain.pem", certs / "key.pem", certs / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    server = RedisServer(_dir(tmp_path, "redis"), tls=(chain, key))
    server.start()
    try:
        with replicas(sandbox, server, 1, tmp_path, SSL_CERT_FILE=str(ca_file)) as (bot,):
            bot.wait_for_log(r"cluster mode on rediss://127\.0\.0\.1:\d+/0 as replica r1")
            d = sandbox.mention("ping")
            sandbox.wait_for_message(thread_ts=d.ts)
            assert "Redis unusable" not in bot.log
        untrusted = run_once(replica_env(sandbox, server, "u"))  # the CA not given: it must not verify
        output = untrusted.stdout + untrusted.stderr
        assert untrusted.returncode == 78, output
        assert "TLS certificate of Redis" in output, output
        assert "Traceback" not in output
    finally:
        server.kill()
