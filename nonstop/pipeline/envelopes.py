"""Envelopes as the pipeline sees them: their kind, slack_sdk's request type, and the key an event is known by."""

from __future__ import annotations

from typing import Any

from slack_sdk.socket_mode.request import SocketModeRequest

__all__ = ["EVENTS_API", "KINDS", "event_key", "kind_of", "parse_request"]

EVENTS_API = "events_api"
KINDS = frozenset({EVENTS_API, "slash_commands", "interactive"})
"""The envelope types Slack sends over Socket Mode; anything else is counted as "other"."""


def kind_of(message: dict[str, Any]) -> str:
    """The envelope's type as a bounded label: one of `KINDS`, or "other"."""
    kind = message.get("type")
    return kind if isinstance(kind, str) and kind in KINDS else "other"


def parse_request(message: dict[str, Any]) -> SocketModeRequest | None:
    """The envelope as slack_sdk's request type, or None when it cannot be handled: no type, or a
    payload that is not a JSON object (slack_sdk would raise on some of those, or invent a dict)."""
    if not isinstance(message.get("type"), str) or not isinstance(message.get("payload"), dict):
        return None
    try:
        return SocketModeRequest.from_dict(message)
    except (TypeError, ValueError):
        return None


def event_key(request: SocketModeRequest) -> str:
    """What an event is known by in the ledger: Slack's event id (the same across retries and connections),
    or the envelope id for an event without one."""
    event_id = request.payload.get("event_id")
    return f"event:{event_id}" if isinstance(event_id, str) and event_id else f"envelope:{request.envelope_id}"
