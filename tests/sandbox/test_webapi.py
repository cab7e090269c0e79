"""Web API shapes and faults, over plain HTTP and through slack_sdk's WebClient."""

import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(sb, method, body=b"", token=None, *, content_type="application/json;charset=utf-8", timeout=10):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(sb.api_url + method, data=body, headers=headers, method="POST")
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def api_up(sb):
    try:
        return post(sb, "auth.test", token=sb.bot_token)[2]["ok"]
    except urllib.error.URLError:
        return False


def test_auth_test_and_lowercase_scopes_header(sandbox):
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.api_port, timeout=10)
    headers = {"Authorization": f"Bearer {sandbox.bot_token}", "Content-Type": "application/json;charset=utf-8"}
    conn.request("POST", "/api/auth.test", body=b"", headers=headers)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert ("x-oauth-scopes", "app_mentions:read,chat:write,commands") in resp.getheaders()
    assert body["user_id"] == "U0BOT0001"
    assert body["bot_id"] == "B0EMUL001"
    assert body["team_id"] == "T0EMUL001"
    assert post(sandbox, "auth.test", token=sandbox.app_token)[2]["ok"] is True
    assert post(sandbox, "auth.test")[2] == {"ok": False, "error": "not_authed"}
    assert post(sandbox, "auth.test", token="xoxb-nope")[2] == {"ok": False, "error": "invalid_auth"}


def test_apps_connections_open_token_rules(sandbox):
    status, _, body = post(sandbox, "apps.connections.open", token=sandbox.app_token)
    assert status == 200
    assert body["url"].startswith(f"ws://127.0.0.1:{sandbox.ws_port}/link/?ticket=")
    assert body["url"].endswith("&app_id=A0EMUL001")
    assert post(sandbox, "apps.connections.open", token=sandbox.bot_token)[2]["error"] == "not_allowed_token_type"
    assert post(sandbox, "apps.connections.open")[2]["error"] == "not_authed"
    form = f"token={sandbox.app_token}".encode()
    assert post(sandbox, "apps.connections.open", form, content_type="application/x-www-form-urlencoded")[2][
        "error"
    ] == "not_authed"  # fmt: skip
    assert post(sandbox, "apps.connections.open", token="xapp-1-sandbox-0-bad")[2]["error"] == "invalid_auth"


def test_lenient_bodies_and_chat_methods(sandbox):
    token = sandbox.bot_token
    # JSON body behind a form content type, and form body behind a JSON content type
    _, _, body = post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"a"}', token,
                      content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert body["ok"] is True
    assert body["message"]["bot_id"] == "B0EMUL001"
    _, _, body2 = post(sandbox, "chat.postMessage", b"channel=C1&text=b&thread_ts=1.2", token)
    assert body2["message"]["thread_ts"] == "1.2"
    assert float(body2["ts"]) > float(body["ts"])
    assert post(sandbox, "chat.postMessage", b'{"channel":"C1"}', token)[2]["error"] == "no_text"
    assert post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"x"}', sandbox.app_token)[2]["error"] == (
        "not_allowed_token_type"
    )
    client = WebClient(token=token, base_url=sandbox.api_url)
    assert client.chat_postEphemeral(channel="C1", user="U1", text="psst")["message_ts"]
    assert client.chat_update(channel="C1", ts="1.1", text="edited")["ts"] == "1.1"
    with pytest.raises(SlackApiError, match="missing_scope"):  # the manifest does not grant reactions:write
        client.reactions_add(channel="C1", timestamp="1.1", name="eyes")
    sandbox.set_scopes([*sandbox.scopes(), "reactions:write"])
    assert client.reactions_add(channel="C1", timestamp="1.1", name="eyes")["ok"]
    assert client.api_call("conversations.info", params={"channel": "C1"})["ok"]
    calls = sandbox.calls("chat.postMessage")
    assert calls[0].params == {"channel": "C1", "text": "a"}


def test_response_url_answers_ok(sandbox):
    from slack_sdk.webhook import WebhookClient

    d = sandbox.slash_command("status")
    resp = WebhookClient(d.response_url).send(text="done", response_type="in_channel")
    assert (resp.status_code, resp.body) == (200, "ok")
    call = sandbox.calls("response_url")[0]
    assert call.params == {"text": "done", "response_type": "in_channel"}


def test_revoked_tokens(sandbox):
    sandbox.revoke("bot")
    assert post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"x"}', sandbox.bot_token)[2]["error"] == (
        "token_revoked"
    )
    sandbox.revoke("app")
    assert post(sandbox, "apps.connections.open", token=sandbox.app_token)[2]["error"] == "token_revoked"
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=sandbox.bot_token, base_url=sandbox.api_url).auth_test()
    assert exc.value.response["error"] == "token_revoked"


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [
        ("ratelimited", 429, "ratelimited"),
        ("http_503", 503, "service_unavailable"),
        ("invalid_auth", 200, "invalid_auth"),
    ],
)
def test_outage_modes_on_connections_open(sandbox, mode, status, error):
    sandbox.outage(30, mode=mode, retry_after=7)
    got_status, headers, body = post(sandbox, "apps.connections.open", token=sandbox.app_token)
    assert (got_status, body) == (status, {"ok": False, "error": error})
    if mode == "ratelimited":
        assert headers["Retry-After"] == "7"
    assert post(sandbox, "auth.test", token=sandbox.bot_token)[2]["ok"]  # other methods unaffected by default
    sandbox.end_outage()
    assert post(sandbox, "apps.connections.open", token=sandbox.app_token)[2]["ok"]


def test_refused_outage_comes_back_on_the_same_port(sandbox):
    port = sandbox.api_port
    sandbox.outage(30, mode="refused")
    with pytest.raises(urllib.error.URLError) as exc:
        post(sandbox, "auth.test", token=sandbox.bot_token)
    assert isinstance(exc.value.reason, ConnectionRefusedError)
    sandbox.end_outage()
    sandbox.wait_until(lambda: sandbox.outage_active() is False, what="listener back")
    assert sandbox.api_port == port
    sandbox.wait_until(lambda: api_up(sandbox), what="API back")


def test_refused_outage_ends_by_itself(sandbox):
    sandbox.outage(0.3, mode="refused")
    sandbox.wait_until(lambda: api_up(sandbox), what="API back")


def test_hang_outage_answers_after_it_ends(sandbox):
    sandbox.outage(30, mode="hang")
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=post(sandbox, "apps.connections.open",
                                                                   token=sandbox.app_token)))  # fmt: skip
    thread.start()
    sandbox.wait_until(lambda: sandbox.calls("apps.connections.open"), what="the hanging request to arrive")
    thread.join(0.5)
    assert thread.is_alive()
    assert sandbox.calls("apps.connections.open")[0].status is None
    sandbox.end_outage()
    thread.join(10)
    assert result["r"][2]["ok"] is True


def test_slow_api(sandbox):
    sandbox.slow_api(0.4, methods=["chat.postMessage"])
    started = time.monotonic()
    assert post(sandbox, "auth.test", token=sandbox.bot_token)[2]["ok"]
    assert time.monotonic() - started < 0.4
    started = time.monotonic()
    assert post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"x"}', sandbox.bot_token)[2]["ok"]
    assert time.monotonic() - started >= 0.4
    sandbox.slow_api(0)
    started = time.monotonic()
    assert post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"x"}', sandbox.bot_token)[2]["ok"]
    assert time.monotonic() - started < 0.4


def test_wait_errors_list_what_was_seen(sandbox):
    post(sandbox, "chat.postMessage", b'{"channel":"C1","text":"hello"}', sandbox.bot_token)
    with pytest.raises(TimeoutError, match="hello"):
        sandbox.wait_for_message("goodbye", timeout=0.2)
    with pytest.raises(TimeoutError, match="live connection"):
        sandbox.wait_for_connections(1, timeout=0.2)


def test_chat_post_message_keeps_its_metadata(sandbox):
    metadata = {"event_type": "nonstop_reply", "event_payload": {"event_id": "Ev1", "index": 0}}
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    answer = client.chat_postMessage(channel="C1", text="pong", metadata=metadata)
    assert answer["message"]["metadata"] == metadata
    form = f"channel=C1&text=pong&metadata={json.dumps(metadata)}".encode()  # a JSON text in a form field
    _, _, body = post(sandbox, "chat.postMessage", form, sandbox.bot_token,
                      content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert body["message"]["metadata"] == metadata
    assert "metadata" not in client.chat_postMessage(channel="C1", text="plain")["message"]
    bad = [("{not json", "invalid_metadata_format"), ('{"event_type": "x"}', "invalid_metadata_schema")]
    for raw, error in bad:
        _, _, body = post(sandbox, "chat.postMessage", json.dumps({"channel": "C1", "text": "t", "metadata": raw})
                          .encode(), sandbox.bot_token)  # fmt: skip
        assert body == {"ok": False, "error": error}
