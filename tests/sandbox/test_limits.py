"""Slack's rate limits in the sandbox (sandbox/limits.py), seen by slack_sdk's WebClient over HTTP and
switched over the control API: chat.postMessage per channel with bursts, the method tiers, 429 with a
Retry-After that is enough to wait."""

from __future__ import annotations

import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from sandbox import Sandbox, SandboxConfig
from sandbox.remote import RemoteSandbox


def bare_client(sb: Sandbox) -> WebClient:
    """A WebClient that retries nothing, so that every answer reaches the test."""
    return WebClient(token=sb.bot_token, base_url=sb.api_url, retry_handlers=[])


def post(client: WebClient, channel: str, text: str) -> tuple[int, dict, dict]:
    """(HTTP status, headers, body) of one chat.postMessage."""
    try:
        resp = client.chat_postMessage(channel=channel, text=text)
    except SlackApiError as exc:
        resp = exc.response
    return resp.status_code, dict(resp.headers), dict(resp.data)


@pytest.fixture
def remote(sandbox: Sandbox) -> RemoteSandbox:
    """The same sandbox, driven over its HTTP control API."""
    return RemoteSandbox(sandbox.control_url)


def test_limits_are_on_by_default_and_off_in_tests(sandbox: Sandbox) -> None:
    assert SandboxConfig().rate_limits is True, "production-like by default (python -m sandbox, the demo)"
    assert sandbox.rate_limits()["on"] is False, "TEST_CONFIG keeps them off"
    client = bare_client(sandbox)
    assert [post(client, "C1", f"m{i}")[0] for i in range(12)] == [200] * 12


def test_a_channel_takes_a_burst_then_one_post_a_second(sandbox: Sandbox, remote: RemoteSandbox) -> None:
    settings = remote.set_rate_limits(on=True, post_per_channel_per_s=1.0, post_burst=4)
    assert (settings["on"], settings["post_burst"], settings["post_per_channel_per_s"]) == (True, 4, 1.0)
    client = bare_client(sandbox)
    answers = [post(client, "C1", f"m{i}") for i in range(6)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 429, 429]
    _, headers, body = answers[4]
    assert body == {"ok": False, "error": "ratelimited"}
    assert headers["Retry-After"] == "1", "whole seconds until the channel's bucket holds a post again"
    posted = [c.params["text"] for c in sandbox.bot_messages()]
    assert posted == ["m0", "m1", "m2", "m3"], "a 429 posts nothing"
    refused = [c for c in sandbox.calls("chat.postMessage") if c.status == 429]
    assert [(c.fault, c.took_effect) for c in refused] == [("ratelimited", False)] * 2


def test_waiting_retry_after_is_enough(sandbox: Sandbox) -> None:
    sandbox.set_rate_limits(on=True, post_per_channel_per_s=1.0, post_burst=2)
    client = bare_client(sandbox)
    assert [post(client, "C1", t)[0] for t in ("a", "b")] == [200, 200]
    status, headers, _ = post(client, "C1", "c")
    assert status == 429
    time.sleep(int(headers["Retry-After"]))  # what a polite client does; the point of this test
    assert post(client, "C1", "c")[0] == 200


def test_slack_sdks_retry_handler_gets_every_post_through(sandbox: Sandbox) -> None:
    """The SDK's RateLimitErrorRetryHandler sleeps Retry-After and tries again: nothing is lost, nothing
    doubled, and each retry came at least Retry-After after the 429 it answers."""
    sandbox.set_rate_limits(on=True, post_per_channel_per_s=2.0, post_burst=2)
    client = WebClient(
        token=sandbox.bot_token, base_url=sandbox.api_url, retry_handlers=[RateLimitErrorRetryHandler(3)]
    )
    for i in range(5):
        assert client.chat_postMessage(channel="C1", text=f"m{i}")["ok"]
    assert [c.params["text"] for c in sandbox.bot_messages()] == [f"m{i}" for i in range(5)]
    calls = sandbox.calls("chat.postMessage")
    limited = [(i, c) for i, c in enumerate(calls) if c.status == 429]
    assert limited, "the burst of 2 was exceeded"
    for i, refused in limited:
        retry = calls[i + 1]
        assert retry.params == refused.params
        assert retry.at - refused.answered_at >= int(refused.response_headers["Retry-After"])


def test_channels_have_buckets_of_their_own(sandbox: Sandbox) -> None:
    sandbox.set_rate_limits(on=True, post_per_channel_per_s=0.5, post_burst=3)
    client = bare_client(sandbox)
    assert [post(client, "C1", f"a{i}")[0] for i in range(4)] == [200, 200, 200, 429]
    assert [post(client, "C2", f"b{i}")[0] for i in range(3)] == [200, 200, 200], "C1 at its limit holds up nothing"
    assert post(client, "C1", "a4")[1]["Retry-After"] == "2", "at 0.5 posts/s the next one is 2 s away"


def test_tiers_limit_each_method_on_its_own(sandbox: Sandbox, remote: RemoteSandbox) -> None:
    settings = remote.set_rate_limits(on=True, tier_per_minute=[1, 20, 3, 100])
    assert settings["tiers"]["chat.update"] == 3
    assert settings["tiers"]["views.publish"] == 4
    client = bare_client(sandbox)

    def update(i: int) -> tuple[int, str | None]:
        try:
            resp = client.chat_update(channel="C1", ts="1.1", text=f"v{i}")
        except SlackApiError as exc:
            resp = exc.response
        return resp.status_code, resp.headers.get("Retry-After")

    assert [update(i) for i in range(4)] == [(200, None)] * 3 + [(429, "20")], "Tier 3 at 3/min: 20 s apart"
    view = {"type": "home", "blocks": []}
    assert all(client.views_publish(user_id="U0HUMAN01", view=view)["ok"] for _ in range(5)), "Tier 4: its own"
    assert post(client, "C1", "x")[0] == 200, "chat.postMessage has its own (per-channel) limit"
    assert client.auth_test()["ok"], "auth.test is not limited"


def test_apps_connections_open_is_left_to_its_manual_fault(sandbox: Sandbox) -> None:
    sandbox.set_rate_limits(on=True, tier_per_minute=[1, 1, 1, 1])
    app = WebClient(token=sandbox.app_token, base_url=sandbox.api_url, retry_handlers=[])
    assert all(app.apps_connections_open(app_token=sandbox.app_token)["ok"] for _ in range(5)), (
        "reconnects are never rate limited by default"
    )
    sandbox.outage(30, mode="ratelimited", retry_after=3, drop_connections=False)
    with pytest.raises(SlackApiError) as exc:
        app.apps_connections_open(app_token=sandbox.app_token)
    assert (exc.value.response.status_code, exc.value.response.headers["Retry-After"]) == (429, "3")


def test_switching_off_lifts_the_limit_and_bad_settings_are_refused(sandbox: Sandbox, remote: RemoteSandbox) -> None:
    sandbox.set_rate_limits(on=True, post_burst=1, post_per_channel_per_s=0.1)
    client = bare_client(sandbox)
    assert [post(client, "C1", t)[0] for t in ("a", "b")] == [200, 429]
    assert remote.set_rate_limits(on=False)["on"] is False
    assert post(client, "C1", "c")[0] == 200
    with pytest.raises(RuntimeError, match="post_burst must be at least 1"):
        remote.set_rate_limits(post_burst=0)
    with pytest.raises(RuntimeError, match="tier_per_minute"):
        remote.set_rate_limits(tier_per_minute=[1, 2, 3])
    assert remote.rate_limits()["post_burst"] == 1, "a refused change changes nothing"
