"""Bad moments of single Web API calls (`fail_calls`): a transient 503 that does nothing, and "posted,
then the answer lost" (500 internal_error / fatal_error, or a cut connection), each recorded so that a
test can tell what Slack really holds."""

from __future__ import annotations

import urllib.error
from http.client import RemoteDisconnected

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox import Sandbox
from sandbox.remote import RemoteSandbox


def bare_client(sb: Sandbox) -> WebClient:
    return WebClient(token=sb.bot_token, base_url=sb.api_url, retry_handlers=[])


def post(client: WebClient, text: str, channel: str = "C1") -> tuple[int | None, str | None]:
    """(HTTP status, error) of one chat.postMessage; (None, exception name) when no answer came."""
    try:
        resp = client.chat_postMessage(channel=channel, text=text)
    except SlackApiError as exc:
        return exc.response.status_code, exc.response["error"]
    except (urllib.error.URLError, RemoteDisconnected, ConnectionError) as exc:
        return None, type(exc).__name__
    return resp.status_code, None


def test_every_fourth_post_is_refused_with_503_and_nothing_posted(sandbox: Sandbox) -> None:
    RemoteSandbox(sandbox.control_url).fail_calls(every=4, mode="http_503")
    client = bare_client(sandbox)
    answers = [post(client, f"m{i}") for i in range(8)]
    assert answers == [(200, None)] * 3 + [(503, "service_unavailable")] + [(200, None)] * 3 + [
        (503, "service_unavailable")
    ]
    assert [c.params["text"] for c in sandbox.bot_messages()] == ["m0", "m1", "m2", "m4", "m5", "m6"]
    refused = [c for c in sandbox.calls("chat.postMessage") if not c.ok]
    assert [(c.params["text"], c.fault, c.took_effect) for c in refused] == [
        ("m3", "http_503", False),
        ("m7", "http_503", False),
    ]


@pytest.mark.parametrize("mode", ["internal_error", "fatal_error"])
def test_posted_then_the_answer_is_a_500(sandbox: Sandbox, mode: str) -> None:
    sandbox.fail_calls(every=2, mode=mode)
    client = bare_client(sandbox)
    assert [post(client, t) for t in ("a", "b", "c")] == [(200, None), (500, mode), (200, None)]
    assert [c.params["text"] for c in sandbox.bot_messages()] == ["a", "b", "c"], "b IS posted"
    lost = sandbox.calls("chat.postMessage")[1]
    assert (lost.status, lost.error, lost.fault, lost.took_effect, lost.ok) == (500, mode, mode, True, False)


def test_posted_then_the_connection_is_cut(sandbox: Sandbox) -> None:
    sandbox.fail_calls(every=1, mode="cut", count=1)
    answer = post(bare_client(sandbox), "a")
    assert answer[0] is None, answer
    [call] = sandbox.calls("chat.postMessage")
    assert (call.status, call.response, call.fault, call.took_effect) == (None, None, "cut", True)
    assert call.answered_at is not None
    assert [c.params["text"] for c in sandbox.bot_messages()] == ["a"], "Slack holds the post all the same"
    assert post(bare_client(sandbox), "b") == (200, None), "count=1: only one failure"


def test_slack_sdks_default_client_posts_twice_after_a_cut(sandbox: Sandbox) -> None:
    """The SDK retries a connection error once by default (ConnectionErrorRetryHandler): after a cut that
    came after posting, Slack holds the message twice. The answer path must not rely on that retry."""
    sandbox.fail_calls(every=1, mode="cut", count=1)
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)  # default retry handlers
    assert client.chat_postMessage(channel="C1", text="once, I hope")["ok"]
    assert [c.fault for c in sandbox.bot_messages()] == ["cut", None]


def test_failures_can_hit_any_method_and_can_be_switched_off(sandbox: Sandbox) -> None:
    sandbox.fail_calls(every=1, mode="http_503", methods=None)
    client = bare_client(sandbox)
    with pytest.raises(SlackApiError) as exc:
        client.auth_test()
    assert (exc.value.response.status_code, exc.value.response["error"]) == (503, "service_unavailable")
    with pytest.raises(SlackApiError):
        client.views_publish(user_id="U0HUMAN01", view={"type": "home", "blocks": []})
    assert sandbox.home_view("U0HUMAN01") is None, "a 503 publishes nothing"
    sandbox.fail_calls(every=0)
    assert client.auth_test()["ok"]


def test_only_the_named_methods_count(sandbox: Sandbox) -> None:
    sandbox.fail_calls(every=2, mode="internal_error", methods=["views.publish"])
    client = bare_client(sandbox)
    assert [post(client, t) for t in "abc"] == [(200, None)] * 3
    view = {"type": "home", "blocks": []}
    assert client.views_publish(user_id="U0HUMAN01", view=view)["ok"]
    with pytest.raises(SlackApiError, match="internal_error"):
        client.views_publish(user_id="U0HUMAN01", view=view)
    assert sandbox.home_view("U0HUMAN01") is not None


def test_bad_arguments_are_refused_over_the_control_api(sandbox: Sandbox) -> None:
    remote = RemoteSandbox(sandbox.control_url)
    with pytest.raises(RuntimeError, match="mode must be one of"):
        remote.fail_calls(every=2, mode="sometimes")
    with pytest.raises(RuntimeError, match="must not be negative"):
        remote.fail_calls(every=-1)
    assert post(bare_client(sandbox), "a") == (200, None)
