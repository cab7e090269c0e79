"""The sandbox's App Home: app_home_opened on request, views.publish recorded, clicks as block_actions."""

from __future__ import annotations

import json

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox import Sandbox
from sandbox.testing import raw_connect, recv_json

VIEW = {
    "type": "home",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}},
        {
            "type": "actions",
            "block_id": "b1",
            "elements": [
                {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"}, "value": "v"}
            ],
        },
    ],
}


def client(sandbox: Sandbox) -> WebClient:
    return WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)


def test_views_publish_stores_the_home_view_per_user(sandbox: Sandbox) -> None:
    first = client(sandbox).views_publish(user_id="U0HUMAN01", view=VIEW)
    assert first["view"]["type"] == "home"
    assert first["view"]["blocks"] == VIEW["blocks"]
    second = client(sandbox).views_publish(user_id="U0HUMAN01", view=json.dumps(VIEW), hash=first["view"]["hash"])
    assert second["view"]["id"] == first["view"]["id"], "one Home view per user, updated in place"
    assert second["view"]["hash"] != first["view"]["hash"]
    assert sandbox.home_view("U0HUMAN01") == second["view"]
    assert sandbox.home_view("U0SOMEONE") is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"user_id": "U0HUMAN01", "view": {"type": "modal", "blocks": []}}, "invalid_arguments"),
        ({"user_id": "", "view": VIEW}, "invalid_arguments"),
        ({"user_id": "U0HUMAN01", "view": VIEW, "hash": "1.2"}, "hash_conflict"),
    ],
)
def test_views_publish_refuses_what_slack_refuses(sandbox: Sandbox, kwargs: dict, error: str) -> None:
    with pytest.raises(SlackApiError) as info:
        client(sandbox).views_publish(**kwargs)
    assert info.value.response["error"] == error


def test_opening_the_home_tab_and_clicking_its_button_arrive_as_slack_sends_them(sandbox: Sandbox) -> None:
    with raw_connect(sandbox) as ws:
        assert recv_json(ws)["type"] == "hello"
        sandbox.wait_for_connections(1)

        sandbox.open_app_home()
        first = recv_json(ws)
        assert first["type"] == "events_api"
        event = first["payload"]["event"]
        assert (event["type"], event["user"], event["tab"]) == ("app_home_opened", "U0HUMAN01", "home")
        assert "view" not in event, "no view before the first views.publish"
        ws.send(json.dumps({"envelope_id": first["envelope_id"]}))

        published = client(sandbox).views_publish(user_id="U0HUMAN01", view=VIEW)["view"]
        sandbox.open_app_home()
        again = recv_json(ws)
        assert again["payload"]["event"]["view"] == published
        ws.send(json.dumps({"envelope_id": again["envelope_id"]}))

        delivery = sandbox.click("go")
        click = recv_json(ws)
        assert click["type"] == "interactive"
        assert click["accepts_response_payload"] is False
        payload = click["payload"]
        assert payload["type"] == "block_actions"
        assert payload["container"] == {"type": "view", "view_id": published["id"]}
        assert "response_url" not in payload, "actions in views carry no response_url"
        [action] = payload["actions"]
        assert (action["action_id"], action["block_id"], action["value"]) == ("go", "b1", "v")
        ws.send(json.dumps({"envelope_id": click["envelope_id"]}))
        assert sandbox.wait_for_ack(delivery).payload is None


def test_clicking_needs_a_published_view_with_that_element(sandbox: Sandbox) -> None:
    with pytest.raises(LookupError, match="open_app_home first"):
        sandbox.click("go")
    client(sandbox).views_publish(user_id="U0HUMAN01", view=VIEW)
    with pytest.raises(LookupError, match="no element with action_id 'stop'"):
        sandbox.click("stop")
