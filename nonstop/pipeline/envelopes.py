"""Envelopes as the pipeline sees them: their kind, slack_sdk's request type, and the key an event is known by."""

from __future__ import annotations

from typing import Any

from slack_sdk.socket_mode.request import SocketModeRequest

__all__ = ["EVENTS_API", "KINDS", "event_key", "is_recovered", "key_label", "kind_of", "older_key", "parse_request"]

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


def is_recovered(message: dict[str, Any]) -> bool:
    """Whether the envelope came by no link: catch-up found it in a conversation's history and made it, with
    `"nonstop": {"recovered": true}` beside (not inside) the payload Bolt sees."""
    marker = message.get("nonstop")
    return isinstance(marker, dict) and marker.get("recovered") is True


def event_key(request: SocketModeRequest) -> str:
    """What an event is known by, in the ledger and in this process.

    A mention is known by its message: `app_mention:<channel>:<ts>`. The same message can reach the bot as
    several events: Slack's retries (the same event id [DOC: Events API, retries]), Slack's Delayed Events
    (redelivered later [DOC]; whether with the same event id is not documented, so not relied on), and a copy
    that catch-up found in the conversation's history (an envelope made here). They are one event. Any
    other event: Slack's event id (the same across retries and connections), or the envelope id for an event
    without one."""
    payload = request.payload
    event = payload.get("event")
    if isinstance(event, dict) and event.get("type") == "app_mention":
        channel, ts = event.get("channel"), event.get("ts")
        if isinstance(channel, str) and channel and isinstance(ts, str) and ts:
            return f"app_mention:{channel}:{ts}"
    return _id_key(request)


def older_key(request: SocketModeRequest, key: str) -> str | None:
    """The key an older version recorded the same event under (`event:<id>`), when it differs from `key`: a
    ledger written by that version (or one of its replicas, in a rolling deploy) is still read right."""
    if not key.startswith("app_mention:"):
        return None
    older = _id_key(request)
    return older if older.startswith("event:") else None


def key_label(key: str) -> str:
    """A key as log lines name the event: its event id (or envelope id), or `<channel>/<ts>` for a mention."""
    kind, _, rest = key.partition(":")
    return rest.replace(":", "/", 1) if kind == "app_mention" else rest


def _id_key(request: SocketModeRequest) -> str:
    event_id = request.payload.get("event_id")
    return f"event:{event_id}" if isinstance(event_id, str) and event_id else f"envelope:{request.envelope_id}"
