"""The real bot (`python app.py`) driven through the sandbox's faults, watched through /readyz, /healthz and
/metrics (and its JSON log), the way an orchestrator and Prometheus would see it.

One bot process walks through the whole story (connect → envelope → half-open → outage → revoked token →
exit 78) to keep the suite fast. Every wait is a deadline on an observed fact, never a bare sleep.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from sandbox import Sandbox
from sandbox.ports import free_port
from tests.botprocess import BotProcess, bot_env, minimal_env, run_bot, run_once

T = TypeVar("T")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Probe:
    """HTTP client for the bot's health server."""

    def __init__(self, port: int, bot: BotProcess) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.bot = bot

    def get(self, path: str) -> tuple[int, str]:
        try:
            with OPENER.open(self.base + path, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def until(self, check: Callable[[], T | None], what: str, timeout: float = 15) -> T:
        """Poll `check` until it returns something truthy; fail with `what` and the bot's log tail."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                result = check()
            except (OSError, ValueError) as e:  # server not up yet, or the bot is going away
                result, last = None, e
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})\n{self.bot.log[-3000:]}")
            if self.bot.proc.poll() is not None:
                raise AssertionError(f"bot exited ({self.bot.proc.returncode}) before: {what}\n{self.bot.log[-3000:]}")
            time.sleep(0.05)

    def until_ready(self, timeout: float = 15) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status, body = self.ready()
            return body if status == 200 else None

        return self.until(check, "/readyz answers 200", timeout)

    def until_not_ready(self, reason: str, timeout: float = 15) -> dict[str, Any]:
        pattern = re.compile(reason)

        def check() -> dict[str, Any] | None:
            status, body = self.ready()
            return body if status == 503 and pattern.fullmatch(body.get("reason", "")) else None

        return self.until(check, f"/readyz answers 503 with a reason matching {reason!r}", timeout)


def live_ids(sb: Sandbox) -> list[str]:
    return [c.id for c in sb.connections(live_only=True) if c.state == "live"]


def test_readiness_and_metrics_through_faults_until_a_revoked_token_stops_the_bot(sandbox: Sandbox) -> None:
    port = free_port()
    env = bot_env(
        sandbox,
        HEALTH_PORT=str(port),
        LOG_FORMAT="json",
        NONSTOP_CONNECTIONS="1",  # one link, so a fault shows in readiness
        NONSTOP_PING_INTERVAL="0.5",
        NONSTOP_STALE_AFTER="2",
        NONSTOP_BACKOFF_BASE="0.2",
        NONSTOP_BACKOFF_CAP="1",
        NONSTOP_DRAIN_TIMEOUT="8",
    )
    with run_bot(env) as bot:
        probe = Probe(port, bot)

        # Connected: ready, and the metrics say why.
        body = probe.until_ready()
        assert body["live_connections"] == 1
        assert body["target_connections"] == 1
        assert probe.get("/healthz")[0] == 200
        assert probe.metric("nonstop_connections_live") == 1
        assert probe.metric("nonstop_connection_attempts_total", outcome="ok") >= 1
        assert probe.metric("nonstop_web_api_calls_total", method="auth.test", outcome="ok") >= 1
        assert probe.metric("nonstop_state", nonstop_state="connected") == 1
        assert probe.metric("nonstop_ready") == 1
        # The link's own ping (framed by nonstop.links.frames) came back, recognised by its pong's bytes.
        probe.until(lambda: probe.metric("nonstop_ping_rtt_seconds") > 0, "a ping's round trip in /metrics")

        # An envelope: received, acked (with its latency), handled, and the reply counted as a Web API call.
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        probe.until(lambda: probe.metric("nonstop_envelopes_total", type="events_api", outcome="acked") >= 1,
                    "an acked events_api envelope")  # fmt: skip
        m = probe.metrics()
        assert m[("nonstop_envelopes_total", frozenset({("type", "events_api"), ("outcome", "received")}))] >= 1
        assert m[("nonstop_ack_latency_seconds_count", frozenset({("type", "events_api")}))] >= 1
        probe.until(
            lambda: probe.metric("nonstop_web_api_calls_total", method="chat.postMessage", outcome="ok") >= 1,
            "the listener's chat.postMessage counted",
        )

        # Half-open: the link goes silent; the drop is counted as half_open and a new link makes it ready again.
        (first,) = sandbox.wait_until(lambda: live_ids(sandbox), what="one live connection")
        sandbox.silence(first)
        probe.until(lambda: probe.metric("nonstop_connection_drops_total", cause="half_open", code="none") >= 1,
                    "a half_open drop in /metrics")  # fmt: skip
        sandbox.wait_until(lambda: [i for i in live_ids(sandbox) if i != first], what="a replacement connection")
        probe.until_ready()

        # Outage: the Web API refuses connections and every link is dropped: not ready, saying why; then back.
        sandbox.outage(3.0, mode="refused")
        down = probe.until_not_ready(r"connecting|backing_off: waiting \d+\.\d+ s before the next attempt", timeout=5)
        assert down["live_connections"] == 0
        probe.until(lambda: probe.metric("nonstop_connection_attempts_total", outcome="network") >= 1,
                    "a refused connection attempt counted as network")  # fmt: skip
        assert probe.get("/healthz")[0] == 200  # not ready, but alive: no reason to restart it
        probe.until_ready(timeout=20)
        assert probe.metric("nonstop_connection_drops_total", cause="reset", code="1006") >= 1  # no close frame

        # Revoked app token while a reply is in flight (the slow chat.postMessage keeps the drain busy): not
        # ready with the fatal reason, still alive while draining, then exit 78.
        sandbox.wait_until(  # "Slack" no longer routes to a silenced link: the mention reaches the bot
            lambda: all(c.state == "live" for c in sandbox.connections(live_only=True)), what="no silent links"
        )
        sandbox.slow_api(6.0, methods=["chat.postMessage"])
        replies_before = len(sandbox.calls("chat.postMessage"))
        d = sandbox.mention("ping")
        sandbox.wait_for_ack(d)
        sandbox.wait_until(  # its listener has started (acks first: a listener starts once envelopes stop)
            lambda: len(sandbox.calls("chat.postMessage")) > replies_before, what="the reply under way"
        )
        sandbox.revoke("app")
        fatal = probe.until_not_ready("fatal: token_revoked", timeout=5)
        assert fatal["status"] == "not_ready"
        assert probe.metric("nonstop_ready") == 0
        assert probe.get("/healthz")[0] == 200
        assert probe.metric("nonstop_connection_attempts_total", outcome="token_revoked") == 1
        assert probe.metric("nonstop_state", nonstop_state="fatal") == 1
        assert bot.wait_exit(timeout=20) == 78
        log_text = bot.log

    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    for secret in (sandbox.bot_token, sandbox.app_token, sandbox.bot_token[5:], sandbox.app_token[5:]):
        assert secret not in log_text
    assert "ticket=" not in log_text.replace("ticket=…redacted", "")
    critical = [line for line in lines if line["level"] == "CRITICAL"]
    assert any("token_revoked" in line["message"] for line in critical), critical
    assert any(line.get("reason") == "token_revoked" for line in critical), critical
    drop = next(line for line in lines if line.get("cause") == "half_open")
    assert drop["connection"] == "connection #1"
    assert drop["close_code"] is None
    assert drop["level"] == "WARNING"
    connected = [line for line in lines if line["message"].startswith("connection #1: connected")]
    assert connected
    assert all(line["connection"] == "connection #1" for line in connected)


def test_health_port_in_use_exits_78_with_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_once(
            minimal_env(
                SLACK_BOT_TOKEN="xoxb-1-2-notarealtoken",
                SLACK_APP_TOKEN="xapp-1-A1-3-notarealtoken",
                SLACK_API_URL="http://127.0.0.1:9/api/",  # never reached: the health server fails first
                HEALTH_HOST="127.0.0.1",
                HEALTH_PORT=str(port),
            )
        )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("nonstop: configuration error: HEALTH_HOST=127.0.0.1 HEALTH_PORT=")
    assert f"port {port} is already in use" in lines[0]
    assert "notarealtoken" not in result.stderr
