"""The HTTP control API (`/_sandbox/<verb>`) that drives a sandbox running in another process."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from sandbox.webapi import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from sandbox.server import Sandbox

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
)
# Read-only views served on GET (query string values are passed as keyword arguments).
VIEWS = ("calls", "connections", "deliveries", "handled_counts", "info")


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


def _view(sandbox: Sandbox, name: str, query: dict[str, str]) -> Any:
    if name == "info":
        return {
            "api_url": sandbox.api_url,
            "bot_token": sandbox.bot_token,
            "app_token": sandbox.app_token,
            "control_url": sandbox.control_url,
            "ws_port": sandbox.ws_port,
        }
    if name == "connections":
        return sandbox.connections(live_only=query.get("live_only", "") in ("1", "true"))
    if name == "calls":
        return sandbox.calls(query.get("method") or None)
    return getattr(sandbox, name)()


def make_control_handler(sandbox: Sandbox) -> Any:
    async def handle(request: HttpRequest) -> HttpResponse:
        name = request.path[len("/_sandbox/") :].strip("/")
        try:
            if request.method == "GET" and name in VIEWS:
                return HttpResponse(200, {"ok": True, "result": to_jsonable(_view(sandbox, name, request.query))})
            if request.method == "POST" and name in VERBS:
                kwargs = json.loads(request.body or b"{}")
                if not isinstance(kwargs, dict):
                    raise TypeError("the body must be a JSON object of keyword arguments")
                return HttpResponse(200, {"ok": True, "result": to_jsonable(getattr(sandbox, name)(**kwargs))})
        except Exception as exc:  # report, never crash the server
            return HttpResponse(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return HttpResponse(404, {"ok": False, "error": f"unknown control endpoint {request.method} {name!r}"})

    return handle
