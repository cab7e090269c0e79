"""Socket Mode server conformance and faults, observed with a raw `websockets` client."""

import contextlib
import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from sandbox import SandboxConfig
from sandbox.testing import TEST_CONFIG, RawSocketClient, raw_connect, recv_json, ws_url

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


NEVER_NOTICED = SandboxConfig(**{**FAST.__dict__, "silent_link_alive_s": float("inf")})


@pytest.fixture
def sandbox_config():
    return FAST


@contextlib.contextmanager
def acking(ws):
    """Ack every envelope `ws` receives, from a background thread, until the block ends."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                ack(ws, recv_json(ws, timeout=0.1))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
        delivered_at = time.monotonic()
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
        acked_within = time.monotonic()
        ack(ws, env)
        result = sandbox.wait_for_ack(d)
        acked_within = time.monotonic() - acked_within + (acked_within - delivered_at)
        assert result.payload is None
        assert result.retry_attempt == 0
        assert result.connection_id == "c1"
        assert 0 < result.latency_s <= acked_within, "measured from the delivery to the ack, nothing else"
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
        assert set(conns) <= {"c1", "c2"}
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


def test_an_attempt_waits_for_a_connection_that_comes_within_the_deadline(sandbox):
    """No routable connection: the attempt is held, and sent as the first attempt once a bot connects."""
    d = sandbox.mention("while reconnecting")
    held = sandbox.delivery(d).attempts
    assert [(a.connection_id, a.retry_attempt) for a in held] == [(None, 0)]
    with raw_connect(sandbox) as ws:
        assert recv_json(ws)["type"] == "hello"  # hello always comes first
        env = recv_json(ws)
        assert env["envelope_id"] == d.envelope_id
        assert env["retry_attempt"] == 0
        ack(ws, env)
        sandbox.wait_for_ack(d)
    (attempt,) = sandbox.delivery(d).attempts
    assert attempt.connection_id == "c1"
    assert attempt.sent_at >= attempt.started_at


def test_an_attempt_with_no_connection_in_time_fails_and_is_retried(sandbox):
    d = sandbox.mention("while offline")
    s = sandbox.slash_command("status")
    assert sandbox.wait_for_outcome(s, ("dispatch_failed",)).attempts[0].connection_id is None
    # each retry is held the same way; with nobody connecting, the event is given up
    record = sandbox.wait_for_outcome(d, ("exhausted",), timeout=10)
    assert [(a.connection_id, a.retry_attempt) for a in record.attempts] == [(None, n) for n in range(4)]


def test_a_retry_waits_for_the_bot_to_come_back(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        d = sandbox.mention("lost with the link")
        recv_json(ws)  # delivered, never acked
    sandbox.wait_until(lambda: len(sandbox.delivery(d).attempts) >= 2, what="the first retry")
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        env = recv_json(ws)
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


@pytest.mark.parametrize("sandbox_config", [NEVER_NOTICED])
def test_silence_is_a_half_open_link_slack_still_counts_and_routes_to(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.silence()
        d = sandbox.mention("into the void")  # "Slack" still routes to the silent link
        assert sandbox.delivery(d).attempts[0].connection_id == "c1"
        assert not ws.ping(b"anyone?").wait(1.0)  # no pong
        with pytest.raises(TimeoutError):  # no data, no server ping, no close
            ws.recv(timeout=0.5)
        ws.send(json.dumps({"envelope_id": d.envelope_id}))  # nor does anything reach "Slack"
        sandbox.wait_until(lambda: len(sandbox.delivery(d).attempts) >= 3, what="two retries")
        assert {a.connection_id for a in sandbox.delivery(d).attempts} == {"c1"}  # retries go there too
        assert sandbox.delivery(d).acked_at is None
        assert sandbox.connections()[0].acks_received == 0
        with raw_connect(sandbox) as ws2:
            assert recv_json(ws2)["num_connections"] == 2  # the dead link still counts
        assert sandbox.connections()[0].state == "silent"


def test_slack_gives_up_on_a_silent_link_after_silent_link_alive_s(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.silence()
        # "Slack" gives up on it, still without a word to the client
        sandbox.wait_until(lambda: sandbox.connections()[0].close_how == "silent_timeout", what="silent teardown")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        assert sandbox.connections(live_only=True) == []
        with raw_connect(sandbox) as ws2:
            assert recv_json(ws2)["num_connections"] == 1


def test_retries_go_to_any_connection_at_random_dead_ones_included(sandbox):
    with raw_connect(sandbox) as live, raw_connect(sandbox) as dead:
        recv_json(live), recv_json(dead)
        sandbox.wait_for_connections(2)
        live_id, dead_id = (c.id for c in sandbox.connections())
        sandbox.silence(dead_id)
        sandbox.lose_first_acks(1.0)  # every first ack is lost: each event gets at least one retry
        with acking(live):
            ds = [sandbox.mention(f"retry me {i}") for i in range(24)]
            sandbox.wait_until(
                lambda: all(len(r.attempts) > 1 and r.attempts[1].connection_id for r in map(sandbox.delivery, ds)),
                what="every first retry sent",
            )
        records = [sandbox.delivery(d) for d in ds]
    firsts = [r.attempts[0].connection_id for r in records]
    retries = [r.attempts[1].connection_id for r in records]
    assert firsts == [live_id, dead_id] * 12  # first deliveries rotate
    assert set(retries) == {live_id, dead_id}  # a retry may land on the dead link ...
    assert any(f == r == dead_id for f, r in zip(firsts, retries, strict=True))  # ... even the one that failed


@pytest.mark.parametrize("sandbox_config", [TEST_CONFIG])  # a 3 s deadline: a slow acker is not a lost ack
def test_lose_first_acks_loses_only_first_attempts(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        sandbox.lose_first_acks(0.5)
        with acking(ws):
            ds = [sandbox.mention(f"half {i}") for i in range(40)]
            sandbox.wait_until(
                lambda: all(sandbox.delivery(d).outcome == "acked" for d in ds), what="all acked in the end"
            )
        records = [sandbox.delivery(d) for d in ds]
    lost = [r for r in records if r.acks_lost]
    assert 0 < len(lost) < 40
    assert all(r.acks_lost == 1 and [a.retry_attempt for a in r.attempts] == [0, 1] for r in lost)
    assert all(len(r.attempts) == 1 for r in records if not r.acks_lost)


def test_eof_ends_the_stream_without_close_frame_or_reset(sandbox):
    with RawSocketClient(ws_url(sandbox)) as client:
        assert client.json()["type"] == "hello"
        sandbox.wait_for_connections(1)
        assert sandbox.eof() == ["c1"]
        assert sandbox.connections(live_only=True) == []  # "Slack" stops routing there at once
        assert sandbox.connections()[0].close_how == "eof"
        assert client.frame() is None  # FIN, with no close frame before it
        # the far end stays quiet: what the client still writes draws neither an answer nor an RST
        for _ in range(3):
            client.send_ping(b"still there?")
            assert client.frame(timeout=0.3) is None
        assert sandbox.connections()[0].closed_at is None
    sandbox.wait_until(lambda: sandbox.connections()[0].closed_at, what="the sandbox to close after the client")
    assert sandbox.connections()[0].pongs_received == 0


def test_after_the_clients_close_frame_tcp_is_left_to_the_client(sandbox):
    with RawSocketClient(ws_url(sandbox)) as client:
        assert client.json()["type"] == "hello"
        sandbox.wait_for_connections(1)
        client.send_close(1000, "bye")
        echo = client.frame()
        assert echo is not None
        assert echo.opcode is Opcode.CLOSE
        assert echo.data[:2] == (1000).to_bytes(2, "big")
        sandbox.wait_until(lambda: sandbox.connections()[0].close_how == "client_close 1000", what="close seen")
        assert sandbox.connections(live_only=True) == []
        with pytest.raises(TimeoutError):  # no FIN from the server: Slack does not close TCP here
            client.frame(timeout=0.5)
        assert sandbox.connections()[0].closed_at is None
    sandbox.wait_until(lambda: sandbox.connections()[0].closed_at, what="closed once the client closed")


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


@pytest.mark.parametrize("sandbox_config", [NEVER_NOTICED])
def test_dead_connections_slack_has_not_noticed_eat_the_budget(sandbox):
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(raw_connect(sandbox)) for _ in range(10)]
        assert [recv_json(ws)["num_connections"] for ws in clients] == list(range(1, 11))
        ghosts = [c.id for c in sandbox.connections()[:2]]
        sandbox.silence(ghosts)
        for ws in clients[:2]:  # the bot gives up on them, but its FIN is lost on the dead path
            ws.close()
        clients[2].close()  # a clean close frees its place at once
        sandbox.wait_until(lambda: sandbox.connections()[2].close_how == "client_close 1000", what="closed")
        with raw_connect(sandbox) as replacement:
            assert recv_json(replacement)["num_connections"] == 10
            with raw_connect(sandbox) as extra:
                assert recv_json(extra)["reason"] == "too_many_websockets"
        assert {c.id for c in sandbox.connections() if c.state == "silent"} == set(ghosts)


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


def test_a_batch_of_mentions_is_written_in_one_loop_turn(sandbox):
    with raw_connect(sandbox) as ws:
        recv_json(ws)
        sandbox.wait_for_connections(1)
        stop = threading.Event()

        def singles() -> None:  # competing one-at-a-time mentions from another thread
            while not stop.is_set():
                sandbox.mention("single")

        other = threading.Thread(target=singles)
        other.start()
        try:
            sandbox.wait_until(lambda: len(sandbox.deliveries()) >= 5, what="singles flowing")
            batch = sandbox.mentions([f"load {i}" for i in range(300)])
        finally:
            stop.set()
            other.join()
        batch_ids = [d.envelope_id for d in batch]
        received = []
        while len(received) < len(sandbox.deliveries()):
            env = recv_json(ws)
            ack(ws, env)
            received.append(env["envelope_id"])
        first = received.index(batch_ids[0])
        assert received[first : first + 300] == batch_ids  # contiguous: nothing slipped in between
        for d in batch:
            sandbox.wait_for_ack(d)
        assert len({d.event_id for d in batch}) == 300
        # The batch's own envelopes were acked (the competing singles may miss the deadline on a loaded machine).
        assert all(sandbox.delivery(d).outcome == "acked" for d in batch)
