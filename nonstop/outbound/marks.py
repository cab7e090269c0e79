"""Replies marked with what they answer, and found again in the conversation.

Each `chat.postMessage` that answers an event carries message metadata [DOC: chat.postMessage `metadata`,
returned by conversations.history / conversations.replies with `include_all_metadata`]:

    {"event_type": "nonstop_reply", "event_payload": {"event_id": "Ev…", "reply": 0}}

`reply` is the post's place among the event's posts (0, 1, …), so a listener that runs again (a replayed
event, or a post that may or may not have gone out) is recognised post by post. Metadata a listener sets
itself is left alone; such a post cannot be found again, and is treated as the bot treats any post without
history scopes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["EVENT_TYPE", "LOOKUP_PAGE", "lookup_call", "mark", "marked_replies", "metadata_of"]

EVENT_TYPE = "nonstop_reply"
LOOKUP_PAGE = 200
"""Messages per lookup call (conversations.replies allows up to 1000, .history up to 999 [DOC])."""


def metadata_of(event_id: str, reply: int) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"event_id": event_id, "reply": reply}}


def mark(kwargs: dict[str, Any], event_id: str, reply: int) -> bool:
    """Add the reply's metadata to `api_call` keyword arguments (in place); False if the caller set its own."""
    meta = metadata_of(event_id, reply)
    body = kwargs.get("json")
    if isinstance(body, dict):
        if body.get("metadata"):
            return False
        kwargs["json"] = {**body, "metadata": meta}
        return True
    for name in ("params", "data"):
        form = kwargs.get(name)
        if isinstance(form, dict) and form.get("metadata"):
            return False
    form = kwargs.get("params") if isinstance(kwargs.get("params"), dict) else kwargs.get("data")
    if isinstance(form, dict):  # form-encoded: the metadata goes as a JSON string
        form["metadata"] = json.dumps(meta, separators=(",", ":"))
        return True
    kwargs["json"] = {"metadata": meta}
    return True


def marked_replies(messages: Iterable[Any], event_id: str) -> dict[int, dict[str, Any]]:
    """The event's replies among `messages` (from conversations.history / .replies), by their place."""
    found: dict[int, dict[str, Any]] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        meta = message.get("metadata")
        if not isinstance(meta, dict) or meta.get("event_type") != EVENT_TYPE:
            continue
        payload = meta.get("event_payload")
        if isinstance(payload, dict) and payload.get("event_id") == event_id and isinstance(payload.get("reply"), int):
            found.setdefault(payload["reply"], message)
    return found


def lookup_call(conversation: str, thread_ts: str | None, oldest: str | None) -> tuple[str, dict[str, Any]]:
    """(method, params) of one look for replies: the thread's replies, or the conversation's newest messages
    since the event (`oldest`), with every message's metadata."""
    params: dict[str, Any] = {"channel": conversation, "include_all_metadata": True, "limit": LOOKUP_PAGE}
    if thread_ts:
        return "conversations.replies", {**params, "ts": thread_ts}
    if oldest:
        params["oldest"] = oldest
    return "conversations.history", params
