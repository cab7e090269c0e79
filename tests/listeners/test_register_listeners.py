"""Real envelopes through `App.dispatch`, replies over real HTTP to the local Slack sandbox.

The App runs with Bolt's defaults (events acked first, listeners on the executor) except for a
one-worker executor: listeners then run in dispatch order, so "the human's reply arrived" proves
that an earlier bot event has been fully processed without sending anything.
"""

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from listeners import register_listeners
from tests.listeners.payloads import command_payload, event_callback, mention_event, slack_ts

SORRY = "Sorry, something went wrong on my side — it has been logged"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="listener")
    yield pool
    pool.shutdown(wait=True)


def build_app(sandbox, executor: ThreadPoolExecutor) -> App:
    # App() calls auth.test on the sandbox here: the bot learns its own user and bot ids.
    return App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url), listener_executor=executor)


@pytest.fixture
def app(sandbox, executor) -> App:
    app = build_app(sandbox, executor)
    register_listeners(app)
    return app


def response_url(sandbox, secret: str) -> str:
    return re.sub(r"/api/?$", "", sandbox.api_url) + f"/commands/T0EMUL001/1001/{secret}"


def dispatch(app: App, payload: dict[str, Any]) -> BoltResponse:
    """What the Socket Mode adapter does with an envelope's payload."""
    return app.dispatch(BoltRequest(mode="socket_mode", body=payload))


def mention(app: App, text: str, **event_fields: Any) -> dict[str, Any]:
    event = mention_event(text, **event_fields)
    response = dispatch(app, event_callback(event))
    assert response.status == 200  # events are acked before the listener runs
    return event


def posted(sandbox) -> list[dict[str, Any]]:
    return [call.params for call in sandbox.calls("chat.postMessage")]


def test_mention_ping_is_answered_in_its_thread(sandbox, app):
    event = mention(app, "<@U0BOT0001> ping", ts=slack_ts(time.time() - 0.2))

    sandbox.wait_for_message(text_contains="pong", channel="C0GENERAL", thread_ts=event["ts"], timeout=10)
    [params] = posted(sandbox)
    assert params["thread_ts"] == event["ts"]
    assert params["channel"] == "C0GENERAL"
    delay = int(re.search(r"in (\d+) ms", params["text"]).group(1))
    assert delay >= 200


def test_mention_status_inside_a_thread_replies_there_with_blocks(sandbox, app):
    parent = slack_ts(time.time() - 60)
    mention(app, "<@U0BOT0001>   STATUS", thread_ts=parent)

    sandbox.wait_for_message(text_contains="Nonstop status", thread_ts=parent, timeout=10)
    [params] = posted(sandbox)
    assert params["thread_ts"] == parent
    assert "Last drop" in params["text"]
    assert [block["type"] for block in params["blocks"]][-1] == "context"


def test_bots_get_no_reply_but_humans_still_do(sandbox, app):
    # Another bot, a bot_message subtype, and the bot itself (Bolt's ignoring_self_events).
    mention(app, "<@U0BOT0001> ping", bot_id="B0OTHER01")
    mention(app, "<@U0BOT0001> ping", subtype="bot_message", bot_id="B0OTHER02")
    mention(app, "<@U0BOT0001> ping", user="U0BOT0001", bot_id="B0EMUL001")
    human = mention(app, "<@U0BOT0001> help")

    sandbox.wait_for_message(text_contains="@Nonstop ping", thread_ts=human["ts"], timeout=10)
    assert [params["thread_ts"] for params in posted(sandbox)] == [human["ts"]]


def test_slash_ping_is_answered_ephemerally_in_the_ack(sandbox, app):
    calls_before = len(sandbox.calls())
    response = dispatch(app, command_payload("ping", response_url=response_url(sandbox, "ping")))

    assert response.status == 200
    assert len(sandbox.calls()) == calls_before, "the answer is in the ack: no Web API call before it"
    body = json.loads(response.body)
    assert body["response_type"] == "ephemeral"
    assert "pong" in body["text"]
    # The whole answer travelled in the ack: nothing was posted, no response_url used.
    assert sandbox.calls("chat.postMessage") == []
    assert sandbox.calls("response_url") == []


def test_slash_status_and_help_travel_in_the_ack(sandbox, app):
    status = json.loads(dispatch(app, command_payload("status")).body)
    help_ = json.loads(dispatch(app, command_payload("")).body)
    hint = json.loads(dispatch(app, command_payload("launch")).body)

    assert status["blocks"][1]["fields"]
    assert "Reconnects" in status["text"]
    assert "/nonstop ping" in help_["text"]
    assert "/nonstop help" in hint["text"]
    assert {status["response_type"], help_["response_type"], hint["response_type"]} == {"ephemeral"}


def test_slash_reply_failure_still_acks_politely_and_the_next_one_works(sandbox, app, monkeypatch):
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("renderer exploded")

    with monkeypatch.context() as patch:
        patch.setattr("listeners.commands.nonstop.reply_for", broken)
        failed = dispatch(app, command_payload("status"))
    assert failed.status == 200
    assert json.loads(failed.body)["text"].startswith(SORRY)

    recovered = json.loads(dispatch(app, command_payload("ping")).body)
    assert "pong" in recovered["text"]


def test_a_raising_event_listener_is_reported_in_thread_and_the_app_keeps_working(sandbox, executor, caplog):
    app = build_app(sandbox, executor)

    @app.event("app_mention", matchers=[lambda event: "explode" in event.get("text", "")])
    def explode(event: dict[str, Any]) -> None:
        raise RuntimeError("listener exploded")

    register_listeners(app)

    body = event_callback(mention_event("<@U0BOT0001> explode"))
    assert dispatch(app, body).status == 200
    sorry = sandbox.wait_for_message(text_contains=SORRY, thread_ts=body["event"]["ts"], timeout=10)
    assert sorry is not None
    [params] = posted(sandbox)
    assert f"(ref {body['event_id']})" in params["text"]

    after = mention(app, "<@U0BOT0001> ping")
    sandbox.wait_for_message(text_contains="pong", thread_ts=after["ts"], timeout=10)
    assert body["event_id"] in caplog.text
    assert "listener exploded" in caplog.text


def test_a_raising_command_listener_is_reported_via_response_url(sandbox, executor):
    app = build_app(sandbox, executor)

    @app.command("/explode")
    def explode(ack: Any) -> None:
        raise RuntimeError("listener exploded before ack")

    register_listeners(app)

    failing = command_payload("", response_url=response_url(sandbox, "explode")) | {"command": "/explode"}
    response = dispatch(app, failing)
    assert response.status == 500  # Bolt sends no ack then; the user hears from us via response_url

    [call] = sandbox.wait_until(lambda: sandbox.calls("response_url"), timeout=10, what="a response_url call")
    assert call.path.endswith("/explode")
    assert call.params["response_type"] == "ephemeral"
    assert call.params["text"].startswith(SORRY)

    assert "pong" in json.loads(dispatch(app, command_payload("ping")).body)["text"]
