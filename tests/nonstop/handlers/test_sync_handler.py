"""`SupervisedSocketModeHandler` as code written for Bolt's `SocketModeHandler` uses it, against the sandbox over
127.0.0.1: `connect()` and its errors, `disconnect()`, `close()`, and `handler.client` (issue 19)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientNotConnectedError
from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop import SupervisedSocketModeHandler
from nonstop.config.settings import SupervisorSettings
from nonstop.errors import ConfigError
from nonstop.status import Telemetry
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES
from sandbox.testing import ws_url

FAST = SupervisorSettings(
    ping_interval_s=0.5,
    stale_after_s=2.5,
    healthy_after_s=2,
    backoff_base_s=0.2,
    backoff_cap_s=2,
    connect_timeout_s=3,
    drain_timeout_s=5,
)


def pong_app(sb: Sandbox) -> App:
    app = App(client=WebClient(token=sb.bot_token, base_url=sb.api_url))

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Any) -> None:
        say(text="pong", thread_ts=event["ts"])

    @app.command("/hello")
    def hello(ack: Any, command: dict[str, Any]) -> None:
        ack(f"Hello, <@{command['user_id']}>!")

    return app


def nonstop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nonstop")]


@contextmanager
def handler_for(sb: Sandbox, app: App | None = None, **keywords: Any) -> Iterator[SupervisedSocketModeHandler]:
    keywords.setdefault("settings", FAST)
    keywords.setdefault("telemetry", Telemetry())
    handler = SupervisedSocketModeHandler(app or pong_app(sb), sb.app_token, **keywords)
    try:
        yield handler
    finally:
        handler.close(timeout_s=30)


def test_connect_returns_once_a_link_is_live_and_a_second_connect_changes_nothing(sandbox: Sandbox) -> None:
    with handler_for(sandbox) as handler:
        handler.client.default_auto_reconnect_enabled = False  # set by code written for slack_sdk's clients
        handler.connect()
        assert handler.client.is_connected() is True
        # The sandbox records a link live just after it writes hello, so a client that has read hello may ask
        # a moment before the record: a short deadline, not a link that comes up later.
        assert sandbox.wait_for_connections(1, timeout=2), "connect() returned before any link was live"
        sandbox.wait_for_connections(2)
        opened = len(sandbox.connections())
        handler.connect()
        assert nonstop_threads().count("nonstop-supervisor") == 1, "a second connect() started a second supervisor"
        d = sandbox.mention("ping")
        assert sandbox.wait_for_message(thread_ts=d.ts).params["text"] == "pong"
        assert len(sandbox.connections()) == opened
        assert sandbox.wait_for_ack(sandbox.slash_command("", command="/hello")).payload == {
            "text": "Hello, <@U0HUMAN01>!"
        }


def test_disconnect_then_connect_reconnects_and_close_leaves_nothing_running(sandbox: Sandbox) -> None:
    with handler_for(sandbox) as handler:
        handler.connect()
        sandbox.wait_for_connections(2)
        assert handler.disconnect(timeout_s=30) == 0
        assert handler.client.is_connected() is False
        sandbox.wait_until(lambda: not sandbox.connections(live_only=True), what="every link closed")
        handler.client.connect()
        assert handler.client.is_connected() is True
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        handler.client.close()  # as Bolt's tests end: the client's close(), not the handler's
        closed = len(sandbox.connections())
        sandbox.wait_until(lambda: not sandbox.connections(live_only=True), what="every link closed")
        sandbox.wait_until(lambda: not nonstop_threads(), what=f"no handler thread left: {nonstop_threads()}")
        with pytest.raises(RuntimeError, match="closed"):
            handler.connect()
    assert len(sandbox.connections()) == closed, "nothing reconnects after close()"


def test_a_revoked_app_token_makes_connect_raise_with_what_to_do(sandbox: Sandbox) -> None:
    sandbox.revoke("app")
    with handler_for(sandbox) as handler:
        with pytest.raises(ConfigError, match=r"Slack rejected the app token: token_revoked .* App-Level Tokens"):
            handler.connect()
        assert handler.exit_code == 78
        assert handler.client.is_connected() is False
    assert "nonstop-supervisor" not in nonstop_threads()


def test_a_preset_wss_uri_is_the_first_links_url(sandbox: Sandbox) -> None:
    with handler_for(sandbox, settings=SupervisorSettings(connections=1)) as handler:
        handler.client.wss_uri = ws_url(sandbox)  # one apps.connections.open of the test's own
        handler.connect()
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        assert len(sandbox.calls("apps.connections.open")) == 1, "the handler asked for a URL it was given"
        assert handler.client.wss_uri is None, "used once: a later link asks for a ticket of its own"


def test_with_a_preset_wss_uri_the_handler_holds_that_link_until_it_needs_a_new_url(sandbox: Sandbox) -> None:
    """A URL the user gave is the user's choice of connection (as with slack_sdk's clients): no second link asks
    for a ticket behind it; once that link ends, every link asks for a URL of its own, two of them again."""
    with handler_for(sandbox, settings=SupervisorSettings(connections=2)) as handler:
        handler.client.wss_uri = ws_url(sandbox)  # one apps.connections.open of the test's own
        handler.connect()
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        assert len(sandbox.connections(live_only=True)) == 1
        assert len(sandbox.calls("apps.connections.open")) == 1, "no ticket asked for behind the preset link"
        sandbox.reset()
        sandbox.wait_until(lambda: len(sandbox.connections(live_only=True)) == 2, what="two links of their own")
        assert len(sandbox.calls("apps.connections.open")) == 3


def test_send_message_writes_a_text_frame_and_refuses_without_a_link(sandbox: Sandbox) -> None:
    with handler_for(sandbox, settings=SupervisorSettings(connections=1)) as handler:
        with pytest.raises(SlackClientNotConnectedError):
            handler.client.send_message("before")
        handler.connect()
        handler.client.send_message("foo")
        sandbox.wait_until(
            lambda: any("foo" in m for c in sandbox.connections() for m in c.other_messages), what="foo at Slack"
        )


def test_listeners_on_the_client_see_every_frame_and_every_envelope_off_the_ack_loop(sandbox: Sandbox) -> None:
    seen: list[tuple[str, str]] = []
    requests: list[SocketModeRequest] = []
    with handler_for(sandbox, settings=SupervisorSettings(connections=1)) as handler:
        handler.client.message_listeners.append(
            lambda client, message, raw: seen.append((str(message.get("type")), threading.current_thread().name))
        )
        handler.client.socket_mode_request_listeners.append(lambda client, request: requests.append(request))
        handler.connect()
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        sandbox.wait_for_ack(sandbox.slash_command("", command="/hello"))
        sandbox.wait_until(lambda: len(requests) == 2, what="both envelopes at the request listener")
    assert ("hello", "nonstop-client-listeners_0") in seen
    assert [t for t, _ in seen if t != "hello"] == ["events_api", "slash_commands"]
    assert [r.envelope_id for r in requests] == [d.envelope_id, requests[1].envelope_id]
    assert requests[1].type == "slash_commands"


def test_trace_flags_log_frames_at_debug_on_the_given_logger_without_relevelling_it(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("my-app.socket")
    logger.setLevel(logging.DEBUG)
    settings = SupervisorSettings(connections=1)
    with (
        caplog.at_level(logging.DEBUG, logger="my-app.socket"),
        handler_for(sandbox, settings=settings, logger=logger, trace_enabled=True) as handler,
    ):
        handler.connect()
        handler.client.ping_pong_trace_enabled = True  # settable later, as on slack_sdk's clients
        sandbox.wait_for_message(thread_ts=sandbox.mention("ping").ts)
        sandbox.wait_until(lambda: "ping sent" in caplog.text, what="a traced ping")
        sandbox.wait_until(lambda: caplog.text.count("pong received") >= 2, what="traced pongs")
    assert logger.level == logging.DEBUG
    traced = [r.getMessage() for r in caplog.records if r.name == "my-app.socket"]
    assert any("received a hello frame" in line for line in traced), traced
    assert any("received a events_api frame" in line for line in traced), traced
    assert any(line.startswith('sending {"envelope_id"') for line in traced), traced
    assert any(line.endswith("ping sent") for line in traced), traced
    assert sandbox.app_token not in caplog.text


def test_ping_interval_sets_how_often_every_link_is_pinged(sandbox: Sandbox) -> None:
    settings = SupervisorSettings(connections=1, ping_interval_s=2.25)
    with handler_for(sandbox, settings=settings, ping_interval=0.1) as handler:
        handler.connect()
        # At 2.25 s a ping, ten pings would take over 20 s: the keyword wins over the settings.
        sandbox.wait_until(
            lambda: sandbox.connections()[0].pings_received >= 10, timeout=10, what="ten pings on the link"
        )


def test_concurrency_sizes_the_event_lane(sandbox: Sandbox) -> None:
    gate, lock = threading.Event(), threading.Lock()
    running = {"now": 0, "most": 0}
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    @app.event("app_mention")
    def slow(event: dict[str, Any]) -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        gate.wait(30)
        with lock:
            running["now"] -= 1

    with handler_for(sandbox, app, concurrency=2) as handler:
        handler.connect()
        ds = [sandbox.mention(f"slow {i}") for i in range(6)]
        sandbox.wait_until(lambda: all(sandbox.delivery(d).acked_at for d in ds), what="every mention acked")
        sandbox.wait_until(lambda: running["now"] == 2, what="two listeners running")
        gate.set()
        sandbox.wait_until(lambda: running["now"] == 0 and handler.supervisor is not None, what="all done")
    assert running["most"] == 2


class Responses:
    """What Bolt's `handle` writes to a Socket Mode client: the responses, in order."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("responses")
        self.sent: list[dict[str, Any]] = []

    def send_socket_mode_response(self, response: Any) -> None:
        self.sent.append(response.to_dict())


def test_handle_runs_the_app_for_one_request_as_bolts_does(sandbox: Sandbox) -> None:
    with handler_for(sandbox) as handler:
        request = SocketModeRequest(
            type="slash_commands",
            envelope_id="e-1",
            payload={"command": "/hello", "user_id": "U0HUMAN01", "text": "", "team_id": "T0EMUL001"},
            accepts_response_payload=True,
        )
        responses = Responses()
        handler.handle(responses, request)
    assert responses.sent == [{"envelope_id": "e-1", "payload": {"text": "Hello, <@U0HUMAN01>!"}}]


def test_catch_up_answers_a_users_app_what_slack_never_delivered_reading_history_through_the_governor(
    sandbox: Sandbox,
) -> None:
    sandbox.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES])
    with handler_for(sandbox, settings=replace(FAST, catch_up_period_s=1.0)) as handler:
        handler.connect()
        sandbox.incident()  # recorded in history, never delivered, links up
        lost = sandbox.mention("ping during the incident")
        assert sandbox.wait_for_message(thread_ts=lost.ts, timeout=20).params["text"].startswith("pong")
        sandbox.end_incident()
        assert len(sandbox.bot_messages()) == 1, "answered once"
