"""The HTTP control API (`/_sandbox/<verb>`) that drives a sandbox running in another process.

It knows the sandbox only as a `ControlTarget` (a protocol), so that the server can import it without
an import cycle: verbs and views are looked up by name on whatever object is handed in.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

from sandbox.httpio import HttpRequest, HttpResponse, RequestHandler

__all__ = ["VERBS", "VIEWS", "ControlTarget", "make_control_handler", "to_jsonable"]

# Verbs callable with POST JSON keyword arguments; the same table drives sandbox.remote.RemoteSandbox.
VERBS = (
    "mention",
    "mentions",
    "send_event",
    "slash_command",
    "interactive",
    "reset",
    "eof",
    "close",
    "silence",
    "disconnect",
    "outage",
    "end_outage",
    "revoke",
    "unrevoke",
    "disable_socket_mode",
    "enable_socket_mode",
    "lose_acks",
    "lose_first_acks",
    "slow_api",
    "stall_handshake",
    "withhold_hello",
    # the App Home
    "open_app_home",
    "click",
    # the Web API's rules
    "set_rate_limits",
    "fail_calls",
    "set_scopes",
    # conversations and Slack itself
    "add_conversation",
    "user_message",
    "incident",
    "end_incident",
)
# Read-only views served on GET (query string values are passed as keyword arguments).
VIEWS = (
    "calls",
    "connections",
    "deliveries",
    "handled_counts",
    "info",
    "bot_messages",
    "home_view",
    "rate_limits",
    "scopes",
    "history",
    "conversations",
)


class ControlTarget(Protocol):
    """What the control API reads directly; every name in VERBS and VIEWS is looked up on it too."""

    api_url: str
    bot_token: str
    app_token: str
    control_url: str
    ws_port: int


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return to_jsonable(value._asdict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


_FLAGS = ("1", "true")


def _view(target: ControlTarget, name: str, query: dict[str, str]) -> Any:
    if name == "info":
        return {
            "api_url": target.api_url,
            "bot_token": target.bot_token,
            "app_token": target.app_token,
            "control_url": target.control_url,
            "ws_port": target.ws_port,
        }
    if name == "connections":
        return target.connections(live_only=query.get("live_only", "") in _FLAGS)  # type: ignore[attr-defined]
    if name == "calls":
        return target.calls(query.get("method") or None)  # type: ignore[attr-defined]
    return getattr(target, name)(**query)


def make_control_handler(target: ControlTarget) -> RequestHandler:
    """The request handler for `/_sandbox/…` paths: POST runs a verb, GET reads a view."""

    async def handle(request: HttpRequest) -> HttpResponse:
        name = request.path[len("/_sandbox/") :].strip("/")
        try:
            if request.method == "GET" and name in VIEWS:
                return HttpResponse(200, {"ok": True, "result": to_jsonable(_view(target, name, request.query))})
            if request.method == "POST" and name in VERBS:
                kwargs = json.loads(request.body or b"{}")
                if not isinstance(kwargs, dict):
                    raise TypeError("the body must be a JSON object of keyword arguments")
                return HttpResponse(200, {"ok": True, "result": to_jsonable(getattr(target, name)(**kwargs))})
        except Exception as exc:  # report, never crash the server
            return HttpResponse(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return HttpResponse(404, {"ok": False, "error": f"unknown control endpoint {request.method} {name!r}"})

    return handle
