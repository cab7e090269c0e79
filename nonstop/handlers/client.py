"""`handler.client`: what code written for slack_sdk's `BaseSocketModeClient` touches, on a supervised handler.

A supervised handler holds several links, not one client, so `handler.client` is a facade over all of them:

- `is_connected()`: at least one link is live. `connect()`, `disconnect()`, `close()`: the handler's.
- `wss_uri`: set before `connect()`, the first link uses it instead of asking `apps.connections.open` (as
  slack_sdk's clients do), once: later links ask for URLs of their own, and `wss_uri` is None again.
- `send_message(text)`: one text frame on a live link; `send_socket_mode_response(response)`, as slack_sdk's.
- `message_listeners` (`listener(client, message, raw)`, every JSON frame Slack sends: hello, envelopes, …) and
  `socket_mode_request_listeners` (`listener(client, request)`, every envelope, retries included): observers.
  They run after the handler took the frame, in order, on a thread of their own (sync) or on the app's loop
  (async), never on the loop that reads and acks; the ack is always the handler's.
- `trace_enabled`, `all_message_trace_enabled`, `ping_pong_trace_enabled`: read at every frame, so setting them
  later works. Any other attribute may be set (`default_auto_reconnect_enabled`, …) and has no effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_sdk.errors import SlackClientNotConnectedError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from nonstop.links.holding import LinkHooks
from nonstop.redact import redact

__all__ = ["AsyncSupervisedSocketModeClient", "SupervisedSocketModeClient"]

Send = Callable[[str], bool]


class _Facade:
    """What both facades share: the attributes, the traces, and the tap that feeds the listeners.

    Args:
        app_token: the app-level token.
        web_client: the Web API client that asks for URLs.
        logger: where traces go.
        trace_enabled, all_message_trace_enabled, ping_pong_trace_enabled: as slack_sdk's clients (DEBUG lines).
        ping_interval: seconds between pings of every link (informational: the handler's settings decide).
    """

    def __init__(
        self,
        *,
        app_token: str,
        web_client: Any,
        logger: logging.Logger,
        trace_enabled: bool = False,
        all_message_trace_enabled: bool = False,
        ping_pong_trace_enabled: bool = False,
        ping_interval: float = 0.0,
    ) -> None:
        self.app_token = app_token
        self.web_client = web_client
        self.logger = logger
        self.trace_enabled = trace_enabled
        self.all_message_trace_enabled = all_message_trace_enabled
        self.ping_pong_trace_enabled = ping_pong_trace_enabled
        self.ping_interval = ping_interval
        self.auto_reconnect_enabled = True
        self.wss_uri: str | None = None
        self.closed = False
        self.message_listeners: list[Callable[..., Any]] = []
        self.socket_mode_request_listeners: list[Callable[..., Any]] = []

    def hooks(self) -> LinkHooks:
        """The links' hooks for one run: `wss_uri` for the first link, and the tap for traces and listeners."""
        preset, self.wss_uri = self.wss_uri, None
        return LinkHooks(
            preset_url=preset,
            on_frame=self._on_frame,
            on_send=self._on_send,
            on_ping=self._on_ping,
            on_pong=self._on_pong,
        )

    # -- on the supervisor's loop: quick, never raising -------------------------------------------------

    def _on_frame(self, link: Any, message: dict[str, Any], raw: str) -> None:
        if self.all_message_trace_enabled:
            self.logger.debug("%s: received %s", link.name, redact(raw))
        elif self.trace_enabled:
            kind = message.get("type")
            self.logger.debug("%s: received a %s frame (envelope_id=%s)", link.name, kind, message.get("envelope_id"))
        if self.message_listeners or self.socket_mode_request_listeners:
            self._listen(message, raw)

    def _on_send(self, text: str) -> None:
        if self.trace_enabled or self.all_message_trace_enabled:
            self.logger.debug("sending %s", redact(text))

    def _on_ping(self, link: str) -> None:
        if self.ping_pong_trace_enabled:
            self.logger.debug("%s: ping sent", link)

    def _on_pong(self, link: str, ms: float) -> None:
        if self.ping_pong_trace_enabled:
            self.logger.debug("%s: pong received after %.1f ms", link, ms)

    def _listen(self, message: dict[str, Any], raw: str) -> None:
        raise NotImplementedError

    def _request(self, message: dict[str, Any]) -> SocketModeRequest | None:
        if not self.socket_mode_request_listeners or not isinstance(message.get("envelope_id"), str):
            return None
        try:
            return SocketModeRequest.from_dict(message)
        except (TypeError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} connected={self.is_connected()}>"

    def is_connected(self) -> bool:
        raise NotImplementedError


class SupervisedSocketModeClient(_Facade):
    """`handler.client` of `SupervisedSocketModeHandler` (see the module's docstring).

    Args:
        handler: the handler it speaks for (`connect`, `disconnect`, `close`, `is_connected`, `send_text`).
        **attributes: as `_Facade`.
    """

    def __init__(self, handler: Any, **attributes: Any) -> None:
        super().__init__(**attributes)
        self._handler = handler
        self._listeners: ThreadPoolExecutor | None = None

    def is_connected(self) -> bool:
        return bool(self._handler.is_connected())

    def connect(self) -> None:
        self._handler.connect()

    def disconnect(self) -> None:
        self._handler.disconnect()

    def close(self) -> None:
        self._handler.close()

    def send_message(self, message: str) -> None:
        """Send one text frame on a live link. Raises `SlackClientNotConnectedError` when none could take it."""
        if not self._handler.send_text(message):
            raise SlackClientNotConnectedError("no live Socket Mode connection could take the message")

    def send_socket_mode_response(self, response: dict[str, Any] | SocketModeResponse) -> None:
        body = response.to_dict() if isinstance(response, SocketModeResponse) else response
        self.send_message(json.dumps(body))

    def shutdown(self) -> None:
        """No listener runs after this (the handler's `close()`)."""
        self.closed = True
        if self._listeners is not None:
            self._listeners.shutdown(wait=False, cancel_futures=True)

    def _listen(self, message: dict[str, Any], raw: str) -> None:
        if self.closed:
            return
        if self._listeners is None:
            self._listeners = ThreadPoolExecutor(1, thread_name_prefix="nonstop-client-listeners")
        try:
            self._listeners.submit(self._run_listeners, message, raw)
        except RuntimeError:  # shut down meanwhile
            return

    def _run_listeners(self, message: dict[str, Any], raw: str) -> None:
        for listener in list(self.message_listeners):
            try:
                listener(self, message, raw)
            except Exception:
                self.logger.exception("a message listener failed")
        request = self._request(message)
        for listener in list(self.socket_mode_request_listeners) if request is not None else []:
            try:
                listener(self, request)
            except Exception:
                self.logger.exception("a socket mode request listener failed")


class AsyncSupervisedSocketModeClient(_Facade):
    """`handler.client` of `AsyncSupervisedSocketModeHandler`: the same, with coroutines (`await
    client.send_message(…)`, `await client.close()`), and listeners that are coroutine functions run on the app's
    loop.

    Args:
        handler: the handler it speaks for.
        **attributes: as `_Facade`.
    """

    def __init__(self, handler: Any, **attributes: Any) -> None:
        super().__init__(**attributes)
        self._handler = handler
        self.loop: asyncio.AbstractEventLoop | None = None  # the app's, once connected

    def is_connected(self) -> bool:
        return bool(self._handler.is_connected())

    async def connect(self) -> None:
        await self._handler.connect_async()

    async def disconnect(self) -> None:
        await self._handler.disconnect_async()

    async def close(self) -> None:
        await self._handler.close_async()

    async def send_message(self, message: str) -> None:
        """Send one text frame on a live link. Raises `SlackClientNotConnectedError` when none could take it."""
        if not await self._handler.send_text_async(message):
            raise SlackClientNotConnectedError("no live Socket Mode connection could take the message")

    async def send_socket_mode_response(self, response: dict[str, Any] | SocketModeResponse) -> None:
        body = response.to_dict() if isinstance(response, SocketModeResponse) else response
        await self.send_message(json.dumps(body))

    def _listen(self, message: dict[str, Any], raw: str) -> None:
        loop = self.loop
        if self.closed or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._run_listeners(message, raw), loop)
        except RuntimeError:  # the app's loop is closed
            return

    async def _run_listeners(self, message: dict[str, Any], raw: str) -> None:
        for listener in list(self.message_listeners):
            try:
                await listener(self, message, raw)
            except Exception:
                self.logger.exception("a message listener failed")
        request = self._request(message)
        for listener in list(self.socket_mode_request_listeners) if request is not None else []:
            try:
                await listener(self, request)
            except Exception:
                self.logger.exception("a socket mode request listener failed")
