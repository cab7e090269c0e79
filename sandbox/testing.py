"""Reusable pytest fixtures: a started sandbox with test-friendly timers, and proxy-free environment."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any, Protocol

import psutil
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from sandbox.config import SandboxConfig
from sandbox.server import Sandbox
from sandbox.tls import SandboxTLS

PROXY_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)  # fmt: skip

TEST_CONFIG = SandboxConfig(
    rate_limits=False,  # a test that needs them turns them on (Sandbox.set_rate_limits)
    ack_deadline_s=3.0,
    retry_delays_s=(0.0, 0.5, 1.0),
    server_ping_interval_s=1.0,
    connection_lifetime_s=3600.0,
    warning_grace_s=1.0,
    refresh_grace_s=0.3,
    silent_link_alive_s=5.0,  # production default: 900 s (see SandboxConfig)
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


class _Observed(Protocol):
    ws_port: int

    def connections(self, live_only: bool = False) -> list[Any]: ...


def connections_of(sb: _Observed, pid: int) -> list[str]:
    """Ids of the sandbox connections that process `pid` holds open now (from the kernel's connection
    table: each sandbox connection records its peer address). For faults aimed at one bot process:
    `sb.reset(conn=connections_of(sb, bot.pid))`. Works with a Sandbox or a RemoteSandbox."""
    local = {
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == sb.ws_port and c.status == psutil.CONN_ESTABLISHED
    }
    return [c.id for c in sb.connections() if c.peer in local and c.closed_at is None]


class RawSocketClient:
    """A WebSocket client over a plain blocking socket, frame by frame, with no library policy on top:
    it never closes, answers or pings unless told, so a test sees exactly what the server does with TCP."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        uri = parse_uri(url)
        self.sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        self.proto = ClientProtocol(uri)
        self._frames: list[Frame] = []
        self.proto.send_request(self.proto.connect())
        self._flush()
        while self.proto.handshake_exc is None and self.proto.state is State.CONNECTING:
            if not self._read():
                raise EOFError("the server closed the connection during the handshake")
        if self.proto.handshake_exc is not None:
            raise self.proto.handshake_exc

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def _read(self) -> bytes:
        data = self.sock.recv(65536)
        if data:
            self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Frame):
                self._frames.append(event)
            elif not isinstance(event, Response):
                raise AssertionError(f"unexpected event {event!r}")
        return data

    def frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame, or None at end of stream (the server's FIN). Raises TimeoutError, OSError."""
        self.sock.settimeout(timeout)
        while not self._frames:
            if not self._read():
                return None
        return self._frames.pop(0)

    def json(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = self.frame(timeout)
        if frame is None:
            raise EOFError("end of stream instead of a frame")
        return json.loads(frame.data)

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def send_ping(self, payload: bytes) -> None:
        self.proto.send_ping(payload)
        self._flush()

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.proto.send_close(code, reason)
        self._flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSocketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
