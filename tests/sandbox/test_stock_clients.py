"""The sandbox against the real stock clients: Bolt's SocketModeHandler and slack_sdk's builtin client."""

import json
import threading

import pytest
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse

from sandbox import SandboxConfig
from sandbox.testing import TEST_CONFIG
from tests.sandbox.bots import running_bot


@pytest.fixture
def sandbox_config():
    return SandboxConfig(**{**TEST_CONFIG.__dict__, "retry_delays_s": (0.0, 0.3, 0.3)})


def test_bolt_mention_reply_and_slash_ack(sandbox):
    with running_bot(sandbox):
        assert sandbox.calls("auth.test")[0].ok
        sandbox.wait_for_connections(1)
        d = sandbox.mention("ping")
        ack = sandbox.wait_for_ack(d)
        assert ack.payload is None
        reply = sandbox.wait_for_message("pong", thread_ts=d.ts)
        assert reply.params["channel"] == "C0GENERAL"
        assert reply.params["team_id"] == "T0EMUL001"
        assert reply.token == sandbox.bot_token
        s = sandbox.slash_command("status")
        payload = sandbox.wait_for_ack(s).payload
        assert payload["text"] == "status"
        assert payload["blocks"][0]["text"]["text"] == "*status* status: all good"
        assert sandbox.handled_counts() == {d.event_id: 1}


def test_bolt_lost_ack_gets_a_retry_with_the_same_event_id(sandbox):
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        sandbox.lose_acks(1)
        d = sandbox.mention("ping")
        ack = sandbox.wait_for_ack(d, timeout=15)
        record = sandbox.delivery(d)
        assert ack.retry_attempt == 1
        assert record.acks_lost == 1
        assert record.attempts[1].retry_attempt == 1
        # a naive bot handles the retry again: two replies for one event
        sandbox.wait_until(lambda: sandbox.handled_counts()[d.event_id] == 2, what="two replies")


def test_bolt_reconnects_after_refresh_requested(sandbox):
    with running_bot(sandbox):
        first = sandbox.wait_for_connections(1)[0]
        sandbox.disconnect("refresh_requested")
        sandbox.wait_until(
            lambda: [c for c in sandbox.connections(live_only=True) if c.id != first.id], what="a new connection"
        )
        d = sandbox.mention("after refresh")
        sandbox.wait_for_message("pong", thread_ts=d.ts)
        sandbox.wait_until(lambda: sandbox.connections()[0].closed_at, what="old connection closed")


def test_bolt_survives_refused_outage(sandbox):
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        sandbox.outage(60, mode="refused", drop_connections=True)
        sandbox.wait_until(lambda: not sandbox.connections(live_only=True), what="connections dropped")
        sandbox.end_outage()
        sandbox.wait_for_connections(1, timeout=15)
        d = sandbox.mention("back?")
        sandbox.wait_for_message("pong", thread_ts=d.ts)


def test_bolt_ratelimited_outage_honours_retry_after(sandbox):
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        sandbox.outage(60, mode="ratelimited", retry_after=1, drop_connections=True)
        sandbox.wait_until(
            lambda: any(c.status == 429 for c in sandbox.calls("apps.connections.open")), what="a 429", timeout=15
        )
        sandbox.end_outage()
        sandbox.wait_for_connections(1, timeout=15)
        limited = [c for c in sandbox.calls("apps.connections.open") if c.status == 429]
        assert limited[0].response == {"ok": False, "error": "ratelimited"}


def test_bolt_revoked_app_token(sandbox):
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        sandbox.revoke("app")
        assert sandbox.connections()[0].close_how == "reset"
        sandbox.wait_until(
            lambda: any(c.error == "token_revoked" for c in sandbox.calls("apps.connections.open")),
            what="token_revoked",
        )
        assert sandbox.connections(live_only=True) == []


def builtin_client(sb, errors, closes, messages):
    client = SocketModeClient(
        app_token=sb.app_token, web_client=WebClient(base_url=sb.api_url), ping_interval=1, auto_reconnect_enabled=True
    )
    client.on_error_listeners.append(errors.append)
    client.on_close_listeners.append(lambda code, reason=None: closes.append(code))
    client.message_listeners.append(lambda c, message, raw: messages.append(message))

    def ack_all(c, req):
        c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(ack_all)
    return client


def test_builtin_client_hello_reset_and_reconnect(sandbox):
    errors, closes, messages = [], [], []
    client = builtin_client(sandbox, errors, closes, messages)
    client.connect()
    try:
        first = sandbox.wait_for_connections(1)[0]
        sandbox.wait_until(lambda: any(m.get("type") == "hello" for m in messages), what="hello at the client")
        d = sandbox.mention("raw")
        sandbox.wait_for_ack(d)
        sandbox.reset()
        sandbox.wait_until(lambda: errors, what="the client to see the reset")
        assert isinstance(errors[0], OSError)
        assert closes == []  # no close frame
        second = sandbox.wait_until(
            lambda: [c for c in sandbox.connections(live_only=True) if c.id != first.id], timeout=15, what="reconnect"
        )
        assert second
    finally:
        client.close()


def test_builtin_client_sees_eof_as_end_of_stream(sandbox):
    """EOF is not an error to the builtin client (unlike the reset above): it keeps reading an ended
    stream (slack_sdk 3.47.0 spins on recv() returning b"", measured in bench/) until its stale check
    finds no pong for 4 x ping_interval, then reconnects on a new ticket."""
    errors, closes, messages = [], [], []
    client = builtin_client(sandbox, errors, closes, messages)
    client.connect()
    try:
        first = sandbox.wait_for_connections(1)[0]
        sandbox.wait_until(lambda: client.current_session.last_ping_pong_time, what="a first pong")
        sandbox.eof()
        second = sandbox.wait_until(
            lambda: [c for c in sandbox.connections(live_only=True) if c.id != first.id], timeout=20, what="reconnect"
        )
        assert second
        assert errors == []  # no OSError: the stream just ended
        assert closes == []  # no close frame
        old = next(c for c in sandbox.connections() if c.id == first.id)
        assert old.close_how == "eof"
    finally:
        client.close()
    sandbox.wait_until(
        lambda: next(c for c in sandbox.connections() if c.id == first.id).closed_at, what="the client closed it"
    )


def test_builtin_client_sees_close_code(sandbox):
    errors, closes, messages = [], [], []
    client = builtin_client(sandbox, errors, closes, messages)
    client.connect()
    try:
        sandbox.wait_for_connections(1)
        sandbox.close(code=1001)
        sandbox.wait_until(lambda: closes, what="on_close at the client")
        assert closes[0] == 1001
        sandbox.wait_until(lambda: len(sandbox.connections(live_only=True)) == 1, timeout=15, what="reconnect")
    finally:
        client.close()


def test_builtin_client_detects_silent_link_and_reconnects(sandbox):
    errors, closes, messages = [], [], []
    client = builtin_client(sandbox, errors, closes, messages)
    client.connect()
    try:
        first = sandbox.wait_for_connections(1)[0]
        sandbox.wait_until(lambda: client.current_session.last_ping_pong_time, what="a first pong")
        sandbox.silence()
        # no pong for > 4 x ping_interval: the client drops the link and reconnects on a new ticket
        sandbox.wait_until(
            lambda: [c for c in sandbox.connections(live_only=True) if c.id != first.id], timeout=20, what="reconnect"
        )
        assert closes == []
    finally:
        client.close()


def test_acks_match_across_connections_during_refresh(sandbox):
    """Envelopes sent right before a refresh may be acked on the new connection."""
    done = threading.Event()
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        ds = [sandbox.mention(f"burst {i}") for i in range(20)]
        sandbox.disconnect("refresh_requested")
        for d in ds:
            sandbox.wait_for_ack(d, timeout=15)
        done.set()
    assert json.dumps(sandbox.handled_counts())  # serialisable
    assert done.is_set()
