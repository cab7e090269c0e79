"""The health server in-process: verdicts from telemetry, Prometheus text, a taken port, stuck clients."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from nonstop.errors import ConfigError
from nonstop.status import ClusterView, Replica, Telemetry
from nonstop.status.health import HealthServer, liveness, readiness, start_health_server
from nonstop.status.state import State
from sandbox.ports import free_port

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str, str]:
    try:
        with OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry(target_connections=2, stale_after_s=2.0)


@pytest.fixture
def server(telemetry: Telemetry) -> Iterator[HealthServer]:
    running = start_health_server("127.0.0.1", free_port(), telemetry, wedged_after_s=1.0)
    assert running is not None
    try:
        yield running
    finally:
        running.close()


def test_before_the_supervisor_runs_alive_but_not_ready(server, telemetry):
    status, ctype, body = get(server.url + "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "starting")
    assert ctype == "application/json"
    status, _, body = get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "starting"


def test_ready_when_a_connection_is_live_and_fresh(server, telemetry):
    telemetry.beat()
    telemetry.connection_up()
    telemetry.inbound()
    telemetry.set_state(State.DEGRADED, "1 of 2 connections")
    status, _, body = get(server.url + "/readyz")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["status"] == "ready"
    assert doc["live_connections"] == 1
    assert doc["target_connections"] == 2
    assert get(server.url + "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("state", "detail", "reason"),
    [
        (State.CONNECTING, "", "connecting"),
        (
            State.BACKING_OFF,
            "waiting 4.2 s before the next attempt",
            "backing_off: waiting 4.2 s before the next attempt",
        ),
        (State.FATAL, "token_revoked", "fatal: token_revoked"),
    ],
)
def test_not_ready_says_why(server, telemetry, state, detail, reason):
    telemetry.beat()
    telemetry.set_state(state, detail)
    status, _, body = get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == reason


def test_stale_link_is_not_ready(telemetry):
    telemetry.connection_up()
    telemetry.inbound()
    telemetry.set_state(State.CONNECTED)
    snap = telemetry.snapshot()
    later = type(snap)(**{**snap.__dict__, "now": snap.now + 3.0})
    verdict = readiness(later)
    assert not verdict.ok
    assert verdict.body["reason"].startswith("stale: no frame from Slack for 3.0s")


def test_wedged_loop_fails_liveness(server, telemetry):
    telemetry.beat()
    assert get(server.url + "/healthz")[0] == 200
    snap = telemetry.snapshot()
    wedged = liveness(type(snap)(**{**snap.__dict__, "now": snap.now + 30}), wedged_after_s=10)
    assert wedged.status == 503
    assert "has not run for 30.0s" in wedged.body["reason"]
    # And through HTTP, with the fixture's 1 s limit: wait (bounded) until the beat is older than that.
    deadline = time.monotonic() + 10
    while (status := get(server.url + "/healthz")[0]) == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 503


def test_metrics_in_prometheus_text(server, telemetry):
    telemetry.attempt("ok")
    status, ctype, body = get(server.url + "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert 'nonstop_connection_attempts_total{outcome="ok"} 1.0' in body
    assert "nonstop_uptime_seconds" in body
    assert get(server.url + "/nope")[0] == 404


def test_a_stuck_client_does_not_block_others(server):
    with socket.create_connection(("127.0.0.1", server.port)) as stuck:
        stuck.sendall(b"GET /metr")  # and never finishes the request
        assert get(server.url + "/healthz")[0] == 200  # a server blocked by `stuck` would time out here


def test_port_in_use_is_a_config_error(telemetry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            start_health_server("127.0.0.1", port, telemetry)
    message = str(caught.value)
    assert f"port {port} is already in use" in message
    assert "HEALTH_PORT=0" in message
    assert "\n" not in message


def test_port_zero_turns_it_off(telemetry):
    assert start_health_server("127.0.0.1", 0, telemetry) is None


def test_a_full_backlog_is_not_ready_and_says_saturated(server, telemetry):
    telemetry.beat()
    telemetry.connection_up()
    telemetry.inbound()
    telemetry.set_state(State.CONNECTED)
    telemetry.set_backlog(99, 100)
    assert get(server.url + "/readyz")[0] == 200
    telemetry.set_backlog(100, 100)
    status, _, body = get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "saturated: 100 events in progress (NONSTOP_MAX_BACKLOG=100)"
    assert get(server.url + "/healthz")[0] == 200, "saturated is not wedged: no restart"


def _cluster(allowed: int, reachable: bool) -> ClusterView:
    replicas = tuple(Replica(f"r{i}", 1, time.time() - 60, 0, this_one=i == 0) for i in range(10))
    if allowed == 0:
        replicas += (Replica("r10", 0, time.time(), 0, this_one=True),)
    return ClusterView(replicas=replicas, budget=10, allowed=allowed, redis_reachable=reachable)


def test_a_replica_without_redis_is_ready_and_says_degraded(server, telemetry):
    telemetry.beat()
    telemetry.connection_up()
    telemetry.inbound()
    telemetry.set_state(State.CONNECTED)
    telemetry.set_cluster(_cluster(allowed=1, reachable=False))
    status, _, body = get(server.url + "/readyz")
    doc = json.loads(body)
    assert (status, doc["status"], doc["degraded"]) == (200, "ready", "redis unreachable")
    assert doc["cluster"] == {"replicas": 10, "connections": 10, "budget": 10, "allowed_here": 1}
    metrics = get(server.url + "/metrics")[2]
    assert "nonstop_redis_reachable 0.0" in metrics
    assert "nonstop_ghost_connections 0.0" in metrics


def test_a_standby_replica_says_so_and_stays_ready(server, telemetry):
    telemetry.beat()
    telemetry.set_state(State.CONNECTING, "standby: no connection of Slack's budget is free")
    telemetry.set_cluster(_cluster(allowed=0, reachable=True))
    status, _, body = get(server.url + "/readyz")
    doc = json.loads(body)
    assert (status, doc["status"]) == (200, "standby")
    assert "10 other replica(s)" in doc["reason"]
