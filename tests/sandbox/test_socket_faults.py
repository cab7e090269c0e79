"""Socket Mode server conformance and faults, observed with a raw `websockets` client."""

import contextlib
import itertools
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sandbox import SandboxConfig
from sandbox.testing import TEST_CONFIG, raw_connect, recv_json, ws_url

FAST = SandboxConfig(
    **{
        **TEST_CONFIG.__dict__,
        "ack_deadline_s": 0.5,
        "retry_delays_s": (0.0, 0.2, 0.2),
        "silent_link_alive_s": 1.5,
        "warning_grace_s": 0.3,
        "refresh_grace_s": 0.3,
    }
)


@pytest.fixture
def sandbox_config():
    return FAST


def ack(ws, envelope, payload=None):
    message = {"envelope_id": envelope["envelope_id"]}
    if payload is not None:
        message["payload"] = payload
    ws.send(json.dumps(message))


def test_hello_is_first_and_exact(sandbox):
    with raw_connect(sandbox) as ws1:
        hello = recv_json(ws1)
        assert hello == {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-emul-1", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": "A0EMUL001"},
        }
        with raw_connect(sandbox, ws_url(sandbox) + "&debug_reconnects=true") as ws2:
            hello2 = recv_json(ws2)
            assert hello2["num_connections"] == 2
            assert hello2["debug_info"]["approximate_connection_time"] == 360
        assert len(sandbox.wait_for_connections(1)) >= 1


def test_client_ping_is_echoed_and_server_pings(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        assert ws.ping(b"session-1:123.5").wait(5)  # the pong carries the identical payload
        # the server pings every server_ping_interval_s; the client library answers with pongs
        sandbox.wait_until(lambda: sandbox.connections()[0].pongs_received >= 1, timeout=5, what="a server ping")


def test_ticket_is_single_use_and_validated(sandbox):
    url = ws_url(sandbox)
    with raw_connect(sandbox, url) as ws:
        recv_json(ws)
        with pytest.raises(InvalidStatus) as reused:
            raw_connect(sandbox, url)
        assert reused.value.response.status_code == 403
    bogus = url.split("ticket=")[0] + "ticket=nope&app_id=A0EMUL001"
    with pytest.raises(InvalidStatus):
        raw_connect(sandbox, bogus)


def test_events_api_envelope_shape_and_ack(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        d = sandbox.mention("deploy api", thread_ts="1700000000.000001")
        env = recv_json(ws)
        assert env["type"] == "events_api"
        assert env["envelope_id"] == d.envelope_id
        assert env["accepts_response_payload"] is False
        assert (env["retry_attempt"], env["retry_reason"]) == (0, "")
        payload = env["payload"]
        assert payload["type"] == "event_callback"
        assert payload["event_id"] == d.event_id
        assert payload["authorizations"][0]["user_id"] == "U0BOT0001"
        event = payload["event"]
        assert event["type"] == "app_mention"
        assert event["text"] == "<@U0BOT0001> deploy api"
        assert event["ts"] == event["event_ts"] == d.ts
        assert event["thread_ts"] == "1700000000.000001"
        ack(ws, env)
        result = sandbox.wait_for_ack(d)
        assert result.payload is None
        assert result.retry_attempt == 0
        assert result.latency_s < 1.0
        assert sandbox.delivery(d).outcome == "acked"


def test_slash_and_interactive_shapes(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        d = sandbox.slash_command("status", command="/nonstop")
        env = recv_json(ws)
        assert env["type"] == "slash_commands"
        assert env["accepts_response_payload"] is True
        assert "retry_attempt" not in env
        assert all(isinstance(v, str) for v in env["payload"].values())
        assert env["payload"]["response_url"].startswith(f"http://127.0.0.1:{sandbox.api_port}/commands/")
        ack(ws, env, {"text": "all good"})
        assert sandbox.wait_for_ack(d).payload == {"text": "all good"}
        i = sandbox.interactive({"type": "view_submission", "view": {"callback_id": "x"}})
        env = recv_json(ws)
        assert env["type"] == "interactive"
        assert env["accepts_response_payload"] is True
        assert env["payload"]["view"]["callback_id"] == "x"
        ack(ws, env, {})
        assert sandbox.wait_for_ack(i).payload is None


def test_ack_on_another_connection_counts(sandbox):
    with raw_connect(sandbox) as ws1, raw_connect(sandbox) as ws2:
        recv_json(ws1), recv_json(ws2)
        sandbox.wait_for_connections(2)
        d = sandbox.mention("hi")
        conn = sandbox.delivery(d).attempts[0].connection_id
        receiver, other = (ws1, ws2) if conn == "c1" else (ws2, ws1)
        env = recv_json(receiver)
        ack(other, env)
        got = sandbox.wait_for_ack(d)
        assert got.connection_id != conn


def test_round_robin_across_live_connections(sandbox):
    with raw_connect(sandbox) as ws1, raw_connect(sandbox) as ws2:
        recv_json(ws1), recv_json(ws2)
        sandbox.wait_for_connections(2)
        ds = [sandbox.mention(f"m{i}") for i in range(4)]
        used = [sandbox.delivery(d).attempts[0].connection_id for d in ds]
        assert used[0] != used[1]
        assert used[0] == used[2]
        assert used[1] == used[3]


def test_lost_ack_causes_retry_with_same_event_id(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.lose_acks(1)
        d = sandbox.mention("again")
        first = recv_json(ws)
        ack(ws, first)  # lost on the way to "Slack"
        retry = recv_json(ws, timeout=5)
        assert retry["retry_attempt"] == 1
        assert retry["retry_reason"] == "timeout"
        assert retry["envelope_id"] != first["envelope_id"]
        assert retry["payload"] == first["payload"]
        ack(ws, retry)
        got = sandbox.wait_for_ack(d)
        record = sandbox.delivery(d)
        assert got.retry_attempt == 1
        assert record.acks_lost == 1
        assert record.outcome == "acked"


def test_unacked_event_is_retried_three_times_then_exhausted(sandbox):
    with raw_connect(sandbox) as ws1, raw_connect(sandbox) as ws2:
        recv_json(ws1), recv_json(ws2)
        sandbox.wait_for_connections(2)
        d = sandbox.mention("nobody home")
        record = sandbox.wait_for_outcome(d, ("exhausted",), timeout=10)
        assert [a.retry_attempt for a in record.attempts] == [0, 1, 2, 3]
        conns = [a.connection_id for a in record.attempts]
        assert all(a != b for a, b in itertools.pairwise(conns))  # a retry prefers another connection
        # a late ack for any attempt still counts
        env_id = record.attempts[0].envelope_id
        sender = ws1 if conns[0] == "c1" else ws2
        sender.send(json.dumps({"envelope_id": env_id}))
        assert sandbox.wait_for_outcome(d, ("acked",)).outcome == "acked"


def test_slash_command_is_never_retried(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        d = sandbox.slash_command("status")
        recv_json(ws)
        record = sandbox.wait_for_outcome(d, ("timeout",), timeout=5)
        assert len(record.attempts) == 1
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_no_live_connection_fails_attempt_then_retries(sandbox):
    d = sandbox.mention("while offline")
    record = sandbox.delivery(d)
    assert record.attempts[0].connection_id is None
    assert d.envelope_id is None
    s = sandbox.slash_command("status")
    assert sandbox.delivery(s).outcome == "dispatch_failed"
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        env = recv_json(ws, timeout=5)  # the next retry step finds this connection
        assert env["payload"]["event_id"] == d.event_id
        assert env["retry_attempt"] >= 1
        ack(ws, env)
        sandbox.wait_for_ack(d)


def test_reset_is_abrupt_without_close_frame(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        assert sandbox.reset() == ["c1"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is None  # no close frame: 1006
    conn = sandbox.wait_until(lambda: [c for c in sandbox.connections() if c.closed_at], what="closed")[0]
    assert conn.close_how == "reset"


def test_close_sends_the_code(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.close(code=1001, reason="going away")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert sandbox.connections()[0].close_how == "server_close 1001"
        assert sandbox.connections(live_only=True) == []


def test_silence_is_a_half_open_link(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.silence()
        d = sandbox.mention("into the void")  # "Slack" still routes to the silent link
        assert sandbox.delivery(d).attempts[0].connection_id == "c1"
        assert not ws.ping(b"anyone?").wait(1.5)  # no pong
        with pytest.raises(TimeoutError):  # no data, no server ping, no close
            ws.recv(timeout=0.5)
        # after silent_link_alive_s "Slack" gives up on it, still without a word to the client
        sandbox.wait_until(lambda: sandbox.connections()[0].close_how == "silent_timeout", what="silent teardown")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        assert sandbox.connections(live_only=True) == []


@pytest.mark.parametrize("reason", ["refresh_requested", "link_disabled", "too_many_websockets"])
def test_disconnect_then_tcp_drop(sandbox, reason):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.disconnect(reason)
        assert sandbox.connections(live_only=True) == []  # no more routing there
        assert recv_json(ws) == {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-emul-1"}}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is None
    assert sandbox.connections()[0].close_how == f"dropped after {reason}"


def test_warning_then_refresh_requested_then_drop(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.disconnect("warning")
        assert recv_json(ws)["reason"] == "warning"
        assert recv_json(ws)["reason"] == "refresh_requested"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_connection_lifetime_runs_the_refresh_sequence(no_proxy_env):
    from sandbox import Sandbox

    with Sandbox(SandboxConfig(**{**FAST.__dict__, "connection_lifetime_s": 0.5})) as sb, raw_connect(sb) as ws:
        assert recv_json(ws)["debug_info"]["approximate_connection_time"] == 0
        assert recv_json(ws)["reason"] == "warning"
        assert recv_json(ws)["reason"] == "refresh_requested"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_eleventh_connection_gets_too_many_websockets(sandbox):
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(raw_connect(sandbox)) for _ in range(10)]
        for ws in clients:
            assert recv_json(ws)["type"] == "hello"
        with raw_connect(sandbox) as extra:
            assert recv_json(extra)["reason"] == "too_many_websockets"
            with pytest.raises(ConnectionClosed):
                extra.recv(timeout=5)
        assert len(sandbox.connections(live_only=True)) == 10


def test_withhold_hello(sandbox):
    sandbox.withhold_hello(True)
    with raw_connect(sandbox) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        assert ws.ping(b"x").wait(2)  # the link itself works
        assert sandbox.connections(live_only=True) == []
        d = sandbox.mention("not routed")
        assert sandbox.delivery(d).attempts[0].connection_id is None
    sandbox.withhold_hello(False)
    with raw_connect(sandbox) as ws:
        assert recv_json(ws)["type"] == "hello"


def test_stall_handshake(sandbox):
    sandbox.stall_handshake(True)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        raw_connect(sandbox, open_timeout=0.5)
    assert time.monotonic() - started >= 0.4
    assert sandbox.connections()[0].state in ("stalled", "closed")
    sandbox.stall_handshake(False)
    with raw_connect(sandbox) as ws:
        assert recv_json(ws)["type"] == "hello"


def test_disable_socket_mode(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.disable_socket_mode()
        assert recv_json(ws)["reason"] == "link_disabled"
    with raw_connect(sandbox) as ws:  # apps.connections.open still answers ok
        assert recv_json(ws)["reason"] == "link_disabled"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_many_mentions_have_low_sandbox_latency(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        ds = [sandbox.mention(f"load {i}") for i in range(300)]
        for _ in ds:
            ack(ws, recv_json(ws))
        acks = [sandbox.wait_for_ack(d) for d in ds]
        latencies = sorted(a.latency_s for a in acks)
        assert latencies[len(latencies) // 2] < 0.5, latencies[-5:]
        assert all(r.outcome == "acked" for r in sandbox.deliveries())
