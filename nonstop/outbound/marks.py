"""Replies marked with what they answer, and found again in the conversation.

Each `chat.postMessage` that answers an event carries message metadata [DOC: chat.postMessage `metadata`,
returned by conversations.history / conversations.replies with `include_all_metadata`]:

    {"event_type": "nonstop_reply", "event_payload": {"event_id": "Ev…", "reply": 0, "ts": "1700000000.000100"}}

`reply` is the post's place among the event's posts (0, 1, …), so a listener that runs again (a replayed
event, or a post that may or may not have gone out) is recognised post by post. `ts` is the answered
message's ts, when the event has one (a mention): the same message can come as several events (a late
delivery with another event id, a copy catch-up found in history), and its answers are found by either.
Metadata a listener sets itself is left alone; such a post cannot be found again, and is treated as the bot
treats any post without history scopes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["EVENT_TYPE", "LOOKUP_PAGE", "answered_ts", "lookup_call", "mark", "marked_replies", "metadata_of"]

EVENT_TYPE = "nonstop_reply"
LOOKUP_PAGE = 200
"""Messages per lookup call (conversations.replies allows up to 1000, .history up to 999 [DOC])."""


def metadata_of(event_id: str, reply: int, ts: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"event_id": event_id, "reply": reply}
    if ts:
        payload["ts"] = ts
    return {"event_type": EVENT_TYPE, "event_payload": payload}


def mark(kwargs: dict[str, Any], event_id: str, reply: int, ts: str | None = None) -> bool:
    """Add the reply's metadata to `api_call` keyword arguments (in place); False if the caller set its own.
    `ts`: the answered message's ts, if the event has one."""
    meta = metadata_of(event_id, reply, ts)
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


def _reply_payloads(messages: Iterable[Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(message, its reply metadata's payload) for each of the bot's marked replies among `messages`."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        meta = message.get("metadata")
        if not isinstance(meta, dict) or meta.get("event_type") != EVENT_TYPE:
            continue
        payload = meta.get("event_payload")
        if isinstance(payload, dict):
            yield message, payload


def marked_replies(messages: Iterable[Any], event_id: str, ts: str | None = None) -> dict[int, dict[str, Any]]:
    """The event's replies among `messages` (from conversations.history / .replies), by their place: those
    marked with its event id, or with the ts of the message it answers (`ts`; the same message as another
    event: a late delivery, a copy catch-up found)."""
    found: dict[int, dict[str, Any]] = {}
    for message, payload in _reply_payloads(messages):
        ours = payload.get("event_id") == event_id or (bool(ts) and payload.get("ts") == ts)
        if ours and isinstance(payload.get("reply"), int):
            found.setdefault(payload["reply"], message)
    return found


def answered_ts(messages: Iterable[Any]) -> set[str]:
    """The ts of every message that the bot's replies among `messages` (from conversations.history / .replies
    with `include_all_metadata`) say they answer: catch-up skips a mention already answered, even after the
    ledger forgot it. Replies marked before answers carried the ts name no message, and are not counted."""
    return {
        payload["ts"]
        for _, payload in _reply_payloads(messages)
        if isinstance(payload.get("ts"), str) and payload["ts"]
    }


def lookup_call(conversation: str, thread_ts: str | None, oldest: str | None) -> tuple[str, dict[str, Any]]:
    """(method, params) of one look for replies: the thread's replies, or the conversation's newest messages
    since the event (`oldest`), with every message's metadata."""
    params: dict[str, Any] = {"channel": conversation, "include_all_metadata": True, "limit": LOOKUP_PAGE}
    if thread_ts:
        return "conversations.replies", {**params, "ts": thread_ts}
    if oldest:
        params["oldest"] = oldest
    return "conversations.history", params
