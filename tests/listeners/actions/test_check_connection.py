"""The Home tab's "Check connection" button, with real Web API calls to the local Slack sandbox."""

import logging
import re
import time
from unittest.mock import create_autospec

import pytest
from slack_bolt import Ack
from slack_sdk import WebClient

from listeners.actions.check_connection import check_connection_callback
from nonstop.status import Telemetry
from tests.listeners.payloads import slack_ts

LOGGER = logging.getLogger("test.check_connection")


@pytest.fixture
def telemetry(monkeypatch) -> Telemetry:
    fresh = Telemetry(target_connections=2)
    monkeypatch.setattr("listeners.actions.check_connection.TELEMETRY", fresh)
    return fresh


def click_body(clicked_at: float) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": "U0HUMAN01"},
        "container": {"type": "view", "view_id": "V0EMUL0001"},
        "actions": [{"action_id": "check_connection", "type": "button", "action_ts": slack_ts(clicked_at)}],
    }


def last_check(sandbox) -> str:
    [publish] = [call for call in sandbox.calls("views.publish") if call.ok]
    assert publish.params["user_id"] == "U0HUMAN01"
    [section] = [
        b for b in publish.params["view"]["blocks"] if b.get("text", {}).get("text", "").startswith("*Last check*")
    ]
    return section["text"]["text"]


def test_a_click_is_acked_first_then_measured_and_shown(sandbox, telemetry):
    telemetry.rtt(7.0)
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    calls_when_acked = []
    ack = create_autospec(Ack, instance=True)
    ack.side_effect = lambda *args, **kwargs: calls_when_acked.append((args, kwargs, len(sandbox.calls())))

    check_connection_callback(ack=ack, body=click_body(time.time() - 0.25), client=client, logger=LOGGER)

    assert calls_when_acked == [((), {}, 0)], "one empty ack, before any Web API call (Slack's 3 s deadline)"
    assert [call.method for call in sandbox.calls()] == ["auth.test", "views.publish"]
    text = last_check(sandbox)
    assert re.search(r"Web API answered in \d+ ms \(auth.test\)", text), text
    assert "WebSocket ping round trip 7 ms" in text
    assert "your click reached me in " in text


def test_a_failing_web_api_is_reported_in_the_view_not_raised(sandbox, telemetry):
    sandbox.outage(30, mode="http_503", drop_connections=False, methods=["auth.test"])
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)

    check_connection_callback(
        ack=create_autospec(Ack, instance=True), body=click_body(time.time()), client=client, logger=LOGGER
    )

    assert "Web API check failed: service_unavailable" in last_check(sandbox)
