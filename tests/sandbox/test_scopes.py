"""The bot token's scopes: `x-oauth-scopes` on every answer, `missing_scope` with `needed` and
`provided`, and the switch that grants more (the history scopes catch-up needs)."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox import Sandbox, SandboxConfig
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES
from sandbox.remote import RemoteSandbox


def client(sb: Sandbox, token: str | None = None) -> WebClient:
    return WebClient(token=token or sb.bot_token, base_url=sb.api_url, retry_handlers=[])


def scopes_header(resp: object) -> str:
    return resp.headers["x-oauth-scopes"]  # type: ignore[attr-defined]


def test_every_answer_carries_the_tokens_scopes(sandbox: Sandbox) -> None:
    c = client(sandbox)
    assert scopes_header(c.auth_test()) == BOT_SCOPES
    assert scopes_header(c.chat_postMessage(channel="C1", text="hi")) == BOT_SCOPES
    with pytest.raises(SlackApiError) as exc:
        c.api_call("chat.postMessage", json={"channel": "C1"})  # no_text: an error answer has it too
    assert scopes_header(exc.value.response) == BOT_SCOPES
    sandbox.set_rate_limits(on=True, post_burst=1)
    c.chat_postMessage(channel="C2", text="one")
    with pytest.raises(SlackApiError) as exc:
        c.chat_postMessage(channel="C2", text="two")
    assert (exc.value.response.status_code, scopes_header(exc.value.response)) == (429, BOT_SCOPES)
    assert (
        scopes_header(client(sandbox, sandbox.app_token).apps_connections_open(app_token=sandbox.app_token))
        == "connections:write"
    )
    assert scopes_header(client(sandbox, sandbox.app_token).auth_test()) == "connections:write"


def test_no_scopes_header_without_a_valid_token(sandbox: Sandbox) -> None:
    with pytest.raises(SlackApiError) as exc:
        client(sandbox, "xoxb-not-a-token").auth_test()
    assert exc.value.response["error"] == "invalid_auth"
    assert "x-oauth-scopes" not in exc.value.response.headers


def test_a_method_without_its_scope_answers_missing_scope(sandbox: Sandbox) -> None:
    sandbox.set_scopes("app_mentions:read,commands")
    with pytest.raises(SlackApiError) as exc:
        client(sandbox).chat_postMessage(channel="C1", text="hi")
    assert exc.value.response.data == {
        "ok": False,
        "error": "missing_scope",
        "needed": "chat:write",
        "provided": "app_mentions:read,commands",
    }
    assert exc.value.response.headers["x-accepted-oauth-scopes"] == "chat:write"
    assert sandbox.bot_messages() == [], "nothing posted"


def test_scopes_are_switched_over_the_control_api(sandbox: Sandbox) -> None:
    remote = RemoteSandbox(sandbox.control_url)
    assert remote.scopes() == BOT_SCOPES.split(",")
    granted = remote.set_scopes(scopes=[*BOT_SCOPES.split(","), *HISTORY_SCOPES])
    assert granted == [*BOT_SCOPES.split(","), *HISTORY_SCOPES]
    assert scopes_header(client(sandbox).auth_test()) == ",".join(granted)
    with pytest.raises(RuntimeError, match="scopes must be"):
        remote.set_scopes(scopes=[1, 2])


def test_the_config_sets_the_scopes_a_sandbox_starts_with(no_proxy_env: None) -> None:
    with Sandbox(SandboxConfig(rate_limits=False, bot_scopes=("chat:write", *HISTORY_SCOPES))) as sb:
        assert scopes_header(client(sb).auth_test()) == ",".join(("chat:write", *HISTORY_SCOPES))
