"""The keywords of Bolt's own Socket Mode handlers, and what each one means under supervision.

`slack_bolt.adapter.socket_mode.SocketModeHandler` (1.30.0) takes `logger`, `web_client`, `proxy`,
`proxy_headers`, `auto_reconnect_enabled`, `trace_enabled`, `all_message_trace_enabled`,
`ping_pong_trace_enabled`, `ping_interval`, `receive_buffer_size` and `concurrency`; its `AsyncSocketModeHandler`
takes `logger`, `web_client`, `proxy`, `ping_interval` and `loop` [SDK]. Each is honoured here, or refused in one
line where it contradicts supervision:

- `web_client`: the Web API client for `apps.connections.open`; its proxy and TLS context reach the WebSocket
  too (default: the app's client, as Bolt's).
- `proxy`: the proxy for `apps.connections.open` and every WebSocket (default: the client's; when that is the
  environment's, `NO_PROXY` is honoured as for the Web API, `nonstop.net.network`). `proxy_headers`: only
  `Proxy-Authorization: Basic …`, sent as the proxy login (the WebSocket library sends no other header to a
  proxy); any other header is refused.
- `ping_interval`: how often every link is pinged (a link silent for longer than that, plus the usual margin,
  is dead). `concurrency`: event listeners running at once (the event lane; commands have a lane of their own).
- `logger`: where the handler's own lines and traces go, at the levels they are written at (default: the
  app's logger). The runtime's lines stay on the `nonstop.*` loggers.
- `trace_enabled`: a DEBUG line for each frame Slack sends and each one sent back; `all_message_trace_enabled`:
  each frame in full; `ping_pong_trace_enabled`: each ping and pong. Settable later on `handler.client`.
- `auto_reconnect_enabled=False` is refused: reconnecting is what the handler is for.
- `receive_buffer_size` is accepted and has no effect (asyncio reads whatever the socket has).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env

from nonstop.config.settings import SupervisorSettings
from nonstop.net import network

__all__ = ["StockOptions"]

_PING_RANGE = (0.1, 600.0)
_CONCURRENCY_RANGE = (1, 256)


@dataclass(frozen=True)
class StockOptions:
    """The stock keywords, checked (`check()` raises `ValueError`/`TypeError` with one line).

    Args:
        client: the Web API client that asks for Socket Mode URLs (`web_client`, or the app's).
        proxy: the explicit proxy (`proxy`, or the client's when it did not come from the environment).
        logger: where the handler's own lines and traces go.
        ping_interval: seconds between pings of every link; None: the settings' (`NONSTOP_PING_INTERVAL`).
        concurrency: event listeners at once; None: the settings' (`NONSTOP_HANDLER_THREADS`).
    """

    client: Any
    proxy: str | None
    logger: logging.Logger
    ping_interval: float | None = None
    concurrency: int | None = None

    @classmethod
    def build(
        cls,
        app: Any,
        *,
        logger: logging.Logger | None,
        web_client: Any,
        proxy: str | None,
        proxy_headers: dict[str, str] | None = None,
        auto_reconnect_enabled: bool = True,
        ping_interval: float | None = None,
        receive_buffer_size: int = 1024,
        concurrency: int | None = None,
    ) -> StockOptions:
        """Check the stock keywords and keep what they mean. Raises `ValueError` or `TypeError` (one line)."""
        if auto_reconnect_enabled is not True:
            raise ValueError(
                "auto_reconnect_enabled=False: a supervised handler always reconnects (that is what it is for); "
                "leave it out, or use Bolt's own SocketModeHandler for a connection that stays down"
            )
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger, not {type(logger).__name__}")
        if not isinstance(receive_buffer_size, int) or receive_buffer_size < 1:
            raise ValueError(f"receive_buffer_size must be a positive int, not {receive_buffer_size!r}")
        _check_number("ping_interval", ping_interval, *_PING_RANGE)
        _check_number("concurrency", concurrency, *_CONCURRENCY_RANGE, whole=True)
        client = web_client if web_client is not None else app.client
        if proxy is None:
            proxy = client.proxy
            if proxy is not None and proxy == load_http_proxy_from_env():
                proxy = None  # slack_sdk copied it from the environment: decide as the Web API does, NO_PROXY too
        if proxy is not None:
            proxy = _with_login(_checked_proxy(proxy), proxy_headers or {})
        elif proxy_headers:
            raise ValueError("proxy_headers without a proxy: give proxy= (or a web_client with a proxy) as well")
        return cls(client, proxy, logger or app.logger, ping_interval, concurrency)

    def apply(self, settings: SupervisorSettings) -> SupervisorSettings:
        """`settings` with what the explicit keywords say instead (they win over the environment)."""
        if self.ping_interval is not None:
            margin = max(0.1, settings.stale_after_s - settings.ping_interval_s)
            settings = replace(
                settings,
                ping_interval_s=self.ping_interval,
                stale_after_s=max(settings.stale_after_s, self.ping_interval + margin),
            )
        if self.concurrency is not None:
            settings = replace(settings, handler_threads=self.concurrency)
        return settings

    def websocket_options(self) -> Any:
        """For `LinkHooks.websocket_options`: the client's TLS context and the explicit proxy on top of the
        environment's choice, or None when neither is given (then the links use the environment's)."""
        tls = getattr(self.client, "ssl", None)
        if self.proxy is None and tls is None:
            return None

        def options(url: str) -> dict[str, Any]:
            chosen = network.current().websocket_options(url)
            if self.proxy is not None:
                chosen["proxy"] = self.proxy
            if tls is not None and urlsplit(url).scheme == "wss":
                chosen["ssl"] = tls
            return chosen

        return options


def _check_number(name: str, value: float | None, low: float, high: float, *, whole: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        raise TypeError(f"{name} must be {'an int' if whole else 'a number'}, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: expected {low:g} to {high:g}")


def _checked_proxy(proxy: str) -> str:
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"proxy={network.proxy_display(proxy)!r} is not an http(s) proxy: expected http://host:port")
    return parts.geturl()


def _with_login(proxy: str, headers: dict[str, str]) -> str:
    """`proxy` carrying the login of a `Proxy-Authorization: Basic …` header (how websockets sends one)."""
    login = None
    for name, value in headers.items():
        scheme, _, encoded = str(value).partition(" ")
        if name.lower() != "proxy-authorization" or scheme.lower() != "basic":
            raise ValueError(
                f"proxy_headers: {name} is not supported: only 'Proxy-Authorization: Basic …', sent as the proxy's "
                "login (the WebSocket library sends no other header to a proxy)"
            )
        try:
            login = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("proxy_headers: Proxy-Authorization is not valid Basic credentials") from None
    if login is None:
        return proxy
    user, _, password = login.partition(":")
    parts = urlsplit(proxy)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}").geturl()
