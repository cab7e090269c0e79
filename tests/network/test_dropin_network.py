"""A drop-in handler takes its proxy and TLS from the app's own `WebClient`, for the WebSocket too (issue 19: the
proxy set on the client reached `apps.connections.open` but the WebSocket read only the environment). The
environment here has no proxy and no extra CA: only the client knows either."""

from __future__ import annotations

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from nonstop import SupervisedSocketModeHandler
from nonstop.config.settings import SupervisorSettings
from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.network.proxy import HttpProxy


def test_the_apps_proxy_and_tls_context_carry_every_websocket(
    sandbox: Sandbox, proxy: HttpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert sandbox.tls is not None
    client = WebClient(
        token=sandbox.bot_token, base_url=sandbox.api_url, proxy=proxy.url(), ssl=sandbox.tls.client_context()
    )
    handler = SupervisedSocketModeHandler(
        App(client=client), sandbox.app_token, settings=SupervisorSettings(connections=2), telemetry=Telemetry()
    )
    try:
        handler.connect()
        sandbox.wait_for_connections(2)
        d = sandbox.mention("through the proxy")
        sandbox.wait_until(lambda: sandbox.delivery(d).acked_at, what="acked over a proxied wss:// link")
        assert proxy.forwarded(sandbox.ws_port) == len(sandbox.connections()) == 2, proxy.log
        assert proxy.forwarded(sandbox.api_port) >= 2, "apps.connections.open through it too"
    finally:
        handler.close(timeout_s=30)
