"""Ask Slack for a Socket Mode URL (`apps.connections.open`) and say plainly how that went."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from nonstop.net import network
from nonstop.net.retry import is_fatal
from nonstop.redact import redact

__all__ = ["TicketRefused", "open_ticket", "ticket_client"]

_QUIET = logging.getLogger("nonstop.links.tickets")
_QUIET.setLevel(logging.CRITICAL)


def ticket_client(base: Any, timeout_s: float, *, proxy: str | None = None) -> WebClient:
    """A client for `apps.connections.open` like `base` (the app's `WebClient` or `AsyncWebClient`, or the one a
    handler was given): its base URL, TLS context and proxy (`proxy` overrides it), a short timeout, and no
    retries or logging of its own (the pool's retry policy decides, and logs each failure once)."""
    return WebClient(
        base_url=base.base_url,
        timeout=int(max(1, timeout_s)),
        ssl=base.ssl,  # the same CAs and proxy as every other connection (nonstop.net.network)
        proxy=proxy if proxy is not None else base.proxy,
        headers=dict(getattr(base, "headers", None) or {}),
        retry_handlers=[],
        logger=_QUIET,
    )


class TicketRefused(Exception):
    """Slack (or the network) did not hand out a URL. `retry_after_s` is set for rate limits."""

    def __init__(self, cause: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.cause = cause  # bounded label: ratelimited | invalid_auth | … | http_503 | network | bad_response
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def fatal(self) -> bool:
        return is_fatal(self.cause)

    def __str__(self) -> str:
        return self.detail


def open_ticket(client: WebClient, app_token: str) -> str:
    """Return a fresh WebSocket URL. Raises `TicketRefused`; the caller's policy decides what next."""
    try:
        response = client.apps_connections_open(app_token=app_token)
    except SlackApiError as e:
        _raise_if_network_problem(e, client.base_url)
        status = e.response.status_code
        data = e.response.data if isinstance(e.response.data, dict) else {}
        error = str(data.get("error") or "")
        if status == 429 or error == "ratelimited":
            header = e.response.headers.get("Retry-After") or e.response.headers.get("retry-after")
            retry_after = _seconds(header)
            detail = f"rate limited (HTTP {status}, Retry-After: {header or 'missing'})"
            raise TicketRefused("ratelimited", detail, retry_after) from None
        if error and status == 200:
            raise TicketRefused(error, f"apps.connections.open answered {error}") from None
        raise TicketRefused(f"http_{status}", redact(f"apps.connections.open answered HTTP {status}")) from None
    except (OSError, ValueError) as e:  # URLError, refused, reset, timeouts, DNS, TLS
        _raise_if_network_problem(e, client.base_url)
        via = network.current().through(client.base_url)
        raise TicketRefused("network", redact(f"{type(e).__name__}: {e}{via}")) from None
    url = response.get("url")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise TicketRefused("bad_response", "apps.connections.open returned no WebSocket URL")
    return url


def _raise_if_network_problem(error: BaseException, url: str) -> None:
    problem = network.current().problem(error, url)  # a certificate or proxy login: fatal, see nonstop.net.retry
    if problem is not None:
        raise TicketRefused(problem.cause, problem.detail) from None


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None
