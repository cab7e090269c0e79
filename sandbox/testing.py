"""Reusable pytest fixtures: a started sandbox with test-friendly timers, and proxy-free environment."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from sandbox.config import SandboxConfig
from sandbox.server import Sandbox
from sandbox.tls import SandboxTLS

PROXY_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)  # fmt: skip

TEST_CONFIG = SandboxConfig(
    ack_deadline_s=3.0,
    retry_delays_s=(0.0, 0.5, 1.0),
    server_ping_interval_s=1.0,
    connection_lifetime_s=3600.0,
    warning_grace_s=1.0,
    refresh_grace_s=0.3,
    silent_link_alive_s=5.0,
    ticket_ttl_s=10.0,
    close_handshake_timeout_s=1.0,
)


def clean_env() -> dict[str, str]:
    """os.environ without proxy variables (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if k not in PROXY_VARS}


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk's socket client tunnels through any proxy variable (and then wraps in TLS): unset them."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """Override in a test module to change the timers."""
    return TEST_CONFIG


@pytest.fixture
def sandbox_tls() -> SandboxTLS | None:
    """Override in a test module to serve https:// and wss:// (a `SandboxTLS`; clean it up after)."""
    return None


@pytest.fixture
def sandbox(no_proxy_env: None, sandbox_config: SandboxConfig, sandbox_tls: SandboxTLS | None) -> Iterator[Sandbox]:
    with Sandbox(sandbox_config, tls=sandbox_tls) as sb:
        yield sb


def ws_url(sb: Sandbox) -> str:
    """A fresh Socket Mode URL via apps.connections.open (a direct call, no SDK)."""
    req = urllib.request.Request(
        sb.api_url + "apps.connections.open", data=b"", headers={"Authorization": f"Bearer {sb.app_token}"}
    )
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    tls: SandboxTLS | None = getattr(sb, "tls", None)  # duck-typed stand-ins need only api_url and app_token
    if tls is not None:
        handlers.append(urllib.request.HTTPSHandler(context=tls.client_context()))
    opener = urllib.request.build_opener(*handlers)
    with opener.open(req, timeout=10) as resp:
        body = json.loads(resp.read())
    if not body.get("ok"):
        raise RuntimeError(f"apps.connections.open failed: {body}")
    return body["url"]


def raw_connect(sb: Sandbox, url: str | None = None, open_timeout: float = 5.0) -> ClientConnection:
    """A plain `websockets` sync client on a fresh ticket: no keepalive, so it never pings on its own."""
    url = url or ws_url(sb)
    tls: SandboxTLS | None = getattr(sb, "tls", None)
    options = {"ssl": tls.client_context()} if tls is not None and url.startswith("wss:") else {}
    return connect(url, open_timeout=open_timeout, ping_interval=None, close_timeout=1, proxy=None, **options)


def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))
