import logging
import time
from unittest.mock import create_autospec

import pytest
from slack_sdk import WebClient

from listeners.events.app_home_opened import app_home_opened_callback
from nonstop.status import Drop, Telemetry

LOGGER = logging.getLogger("test.app_home_opened")


@pytest.fixture
def telemetry(monkeypatch) -> Telemetry:
    fresh = Telemetry(target_connections=2)
    monkeypatch.setattr("listeners.events.app_home_opened.TELEMETRY", fresh)
    return fresh


def home_event(tab: str = "home") -> dict:
    return {"type": "app_home_opened", "user": "U0HUMAN01", "channel": "D0HUMAN01", "tab": tab, "event_ts": "1.2"}


def view_text(view: dict) -> str:
    parts = []
    for block in view["blocks"]:
        parts += [block.get("text", {}).get("text", "")]
        parts += [field["text"] for field in block.get("fields", [])]
        parts += [element.get("text", "") for element in block.get("elements", []) if block["type"] == "context"]
    return "\n".join(parts)


def test_opening_the_home_tab_publishes_the_live_status_for_that_user(telemetry):
    telemetry.connection_up()
    telemetry.connection_up()
    telemetry.connection_down(
        Drop(at=time.time() - 90, cause="half_open", explanation="no frame from Slack for 8 s", connection_age_s=3600)
    )
    telemetry.set_state("degraded")
    client = create_autospec(WebClient, instance=True)

    app_home_opened_callback(event=home_event(), client=client, logger=LOGGER)

    client.views_publish.assert_called_once()
    kwargs = client.views_publish.call_args.kwargs
    assert kwargs["user_id"] == "U0HUMAN01"
    view = kwargs["view"]
    assert view["type"] == "home"
    text = view_text(view)
    assert "Nonstop status: degraded" in text
    assert "*Live connections*\n1 of 2" in text
    assert "*Reconnects*\n1 (half_open 1)" in text
    assert "1m 30s ago" in text or "1m 29s ago" in text or "1m 31s ago" in text
    assert "no frame from Slack for 8 s" in text
    assert "*Uptime*" in text
    [actions] = [block for block in view["blocks"] if block["type"] == "actions"]
    [button] = actions["elements"]
    assert (button["type"], button["action_id"], button["text"]["text"]) == (
        "button",
        "check_connection",
        "Check connection",
    )


def test_the_messages_tab_gets_nothing(telemetry):
    client = create_autospec(WebClient, instance=True)
    app_home_opened_callback(event=home_event(tab="messages"), client=client, logger=LOGGER)
    client.views_publish.assert_not_called()
