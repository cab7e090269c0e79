"""What Nonstop tells a listener about an Events API event, in Bolt's `context` (docs/dropin.md):

- `context["nonstop_recovered"]`: True when the event came by no link: catch-up found its message in the
  conversation's history (Slack never delivered it, or not in time).
- `context["nonstop_late_s"]`: seconds from when the event happened (its `event_ts`, else its message `ts`,
  else the payload's `event_time`, whole seconds) to when Bolt's dispatch of it starts here; None when the
  event says neither. Measured on this host's clock, so never below 0.

They are set the way Bolt means a request's context to be seeded: `BoltRequest(context=...)`, which Bolt's
own socket-mode adapter leaves empty (slack_bolt.adapter.socket_mode.internals.run_bolt_app).
"""

from __future__ import annotations

import time
from typing import Any

from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.request import BoltRequest
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.socket_mode.request import SocketModeRequest

__all__ = ["LATE_S", "RECOVERED", "async_bolt_request", "bolt_request", "late_s"]

RECOVERED = "nonstop_recovered"
LATE_S = "nonstop_late_s"


def late_s(payload: dict[str, Any], now: float) -> float | None:
    """How late the event in `payload` (an Events API body) is at wall-clock time `now`; None if unknown."""
    event = payload.get("event")
    if isinstance(event, dict):
        for name in ("event_ts", "ts"):
            try:
                return max(0.0, now - float(event[name]))
            except (KeyError, TypeError, ValueError):
                continue
    event_time = payload.get("event_time")
    if isinstance(event_time, int | float) and not isinstance(event_time, bool):
        return max(0.0, now - event_time)
    return None


def _context(request: SocketModeRequest, recovered: bool | None) -> dict[str, Any] | None:
    if recovered is None or request.type != "events_api":
        return None
    return {RECOVERED: recovered, LATE_S: late_s(request.payload, time.time())}


def bolt_request(request: SocketModeRequest, recovered: bool | None = None) -> BoltRequest:
    """Bolt's request for `request`, as Bolt's socket-mode adapter makes it, with Nonstop's keys in its context
    for an Events API event (`recovered` None: not an event, nothing added)."""
    return BoltRequest(
        mode="socket_mode", body=request.payload, headers=build_headers(request), context=_context(request, recovered)
    )


def async_bolt_request(request: SocketModeRequest, recovered: bool | None = None) -> AsyncBoltRequest:
    """`bolt_request` for an `AsyncApp`."""
    return AsyncBoltRequest(
        mode="socket_mode", body=request.payload, headers=build_headers(request), context=_context(request, recovered)
    )
