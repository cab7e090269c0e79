"""Conversations and their messages, and the Web API methods that read them.

The model, with its sources (docs/sandbox-model.md, "History", has the reasoning):
- The workspace has conversations of four kinds (`public_channel`, `private_channel`, `mpim`, `im`);
  the bot is a member of some. Every message a user writes (a mention, or a plain message) and every post
  of the bot is a message in its conversation's history, kept in `ts` order. A reply carries `thread_ts`
  and `parent_user_id`; its parent gets `thread_ts`, `reply_count`, `reply_users`, `reply_users_count`
  and `latest_reply` [DOC: conversations.replies' page and its example].
- `users.conversations` lists the conversations the bot is a member of, by `types` (default
  `public_channel`), each kind needing its `*:read` scope [DOC]; `conversations.history` returns a
  conversation's top-level messages and thread parents, newest first [DOC: "conversations.history returns
  only parent messages"]; `conversations.replies` a thread, parent first, then the replies oldest first
  [DOC]. Both need the kind's `*:history` scope and membership [DOC: "any conversation the relevant bot is
  a member of"].
- Pagination: `limit`, an opaque `cursor`, `has_more` and `response_metadata.next_cursor` [DOC]; the
  cursor text copies the shape of Slack's ("next_ts:…", "team:…", base64) [OBS: the methods' examples].
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.config import GENERAL_CHANNEL, HUMAN_USER_ID, TEAM_ID
from sandbox.scopes import HISTORY_SCOPE_OF, KINDS, READ_SCOPE_OF, missing_scope

__all__ = ["Conversation", "History", "mention_message", "ts_key", "user_message"]

Body = dict[str, Any]  # a method's JSON answer: ok, or an error

RANDOM_CHANNEL = "C0RANDOM"  # a public channel the bot is not in (not_in_channel)
CHANNEL_KINDS = ("public_channel", "private_channel")
# Defaults and maxima of `limit` [DOC: each method's argument table]
HISTORY_LIMIT = (100, 999)  # conversations.history: default 100, "Maximum of 999"
REPLIES_LIMIT = (1000, 1000)  # conversations.replies: default 1000 [INF: the same maximum]
LIST_LIMIT = (100, 999)  # users.conversations: default 100, "max value of 999"


def ts_key(ts: Any) -> int:
    """A Slack timestamp ("1795777181.614270", "1795777181", 1.5) as whole microseconds, exactly (a float
    cannot hold 16 digits); ValueError for anything else."""
    text = str(ts).strip()
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not a Slack timestamp: {ts!r}")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


@dataclass
class Conversation:
    id: str
    kind: str
    name: str
    member: bool  # is the bot in it?
    user: str | None = None  # the other party of an im
    created: int = field(default_factory=lambda: int(time.time()))
    messages: list[dict[str, Any]] = field(default_factory=list)  # every message, in ts order
    keys: list[int] = field(default_factory=list)  # ts_key of each message, for bisect

    def find(self, ts: str) -> dict[str, Any] | None:
        key = ts_key(ts)
        i = bisect.bisect_left(self.keys, key)
        return self.messages[i] if i < len(self.keys) and self.keys[i] == key else None

    def summary(self) -> dict[str, Any]:
        """The conversation object users.conversations lists (without is_member [DOC])."""
        if self.kind == "im":
            return {"id": self.id, "created": self.created, "is_im": True, "user": self.user,
                    "is_user_deleted": False, "is_org_shared": False, "priority": 0}  # fmt: skip
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": self.kind == "public_channel",
            "is_group": self.kind != "public_channel",
            "is_im": False,
            "is_mpim": self.kind == "mpim",
            "is_private": self.kind != "public_channel",
            "is_archived": False,
            "is_general": self.id == GENERAL_CHANNEL,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "created": self.created,
            "creator": HUMAN_USER_ID,
            "unlinked": 0,
        }


def _error(code: str) -> Body:
    return {"ok": False, "error": code}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _limit(raw: Any, bounds: tuple[int, int]) -> int:
    default, maximum = bounds
    if raw in (None, ""):
        return default
    return max(1, min(int(raw), maximum))  # ValueError for garbage: invalid_arguments [INF]


def _cursor(raw: Any, prefix: str) -> str | None:
    """The position a cursor points at, "" for no cursor, None for a bad one."""
    if raw in (None, ""):
        return ""
    try:
        text = base64.b64decode(str(raw), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text[len(prefix) :] if text.startswith(prefix) and len(text) > len(prefix) else None


def _encode(prefix: str, position: str) -> str:
    return base64.b64encode(f"{prefix}{position}".encode()).decode()


@dataclass(frozen=True)
class _Window:
    """Which messages a read asks for: `oldest`/`latest` (exclusive unless `inclusive`), the cursor's
    position (`start`), and `limit`."""

    oldest: int
    latest: int
    inclusive: bool
    start: int | None
    limit: int

    def holds(self, key: int, newest_first: bool) -> bool:
        in_range = self.oldest < key < self.latest or (self.inclusive and key in (self.oldest, self.latest))
        if self.start is None:
            return in_range
        return in_range and (key <= self.start if newest_first else key >= self.start)


def _window(params: dict[str, Any], limits: tuple[int, int]) -> _Window | Body:
    """The read's window from its arguments, or the error Slack answers for a bad one [DOC: the errors]."""
    try:
        oldest = ts_key(params.get("oldest") or "0")
    except ValueError:
        return _error("invalid_ts_oldest")
    try:
        latest = ts_key(params["latest"]) if params.get("latest") else 1 << 62
    except ValueError:
        return _error("invalid_ts_latest")
    position = _cursor(params.get("cursor"), "next_ts:")
    try:
        start = ts_key(position) if position else None
    except ValueError:
        position = None
    if position is None:
        return _error("invalid_cursor")
    try:
        limit = _limit(params.get("limit"), limits)
    except ValueError:
        return _error("invalid_arguments")
    return _Window(oldest, latest, _flag(params.get("inclusive")), start, limit)


class History:
    """The workspace's conversations; owned by the sandbox's loop thread."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.add(GENERAL_CHANNEL, "public_channel", "general", member=True)
        self.add(RANDOM_CHANNEL, "public_channel", "random", member=False)
        self.add("D" + HUMAN_USER_ID[1:], "im", "", member=True, user=HUMAN_USER_ID)  # the App Home DM

    def add(
        self, conv_id: str, kind: str, name: str = "", member: bool = True, user: str | None = None
    ) -> Conversation:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if not conv_id or conv_id[0] not in "CGD":
            raise ValueError("a conversation id starts with C, G or D")
        conv = self.conversations.get(conv_id)
        if conv is None:
            conv = self.conversations[conv_id] = Conversation(conv_id, kind, name or conv_id.lower(), member, user)
        else:
            conv.kind, conv.member, conv.user = kind, member, user
            conv.name = name or conv.name
        return conv

    def resolve(self, channel: str) -> Conversation:
        """The conversation a message goes to, created on first use [INF: the sandbox's workspace has every
        channel a test names, with the bot in it]: C… public, G… private, D… an im; a user id (U…/W…)
        means the bot's DM with that user, as chat.postMessage allows [DOC]."""
        if channel[:1] in "UW":
            return self.conversations.get("D" + channel[1:]) or self.add("D" + channel[1:], "im", user=channel)
        conv = self.conversations.get(channel)
        if conv is None:
            kind = {"C": "public_channel", "G": "private_channel", "D": "im"}.get(channel[:1], "public_channel")
            conv = self.add(channel if channel[:1] in "CGD" else "C" + channel, kind)
        return conv

    def record(self, conv: Conversation, message: dict[str, Any]) -> dict[str, Any]:
        """Keep `message` (it has a `ts`) in `conv`; a reply updates its thread's parent."""
        key = ts_key(message["ts"])
        i = bisect.bisect_left(conv.keys, key)
        if i < len(conv.keys) and conv.keys[i] == key:  # a ts is unique in a conversation: keep the first
            return conv.messages[i]
        stored = dict(message)  # shallow: nothing nested is changed in place, and reads hand out deep copies
        conv.keys.insert(i, key)
        conv.messages.insert(i, stored)
        parent_ts = stored.get("thread_ts")
        parent = conv.find(parent_ts) if parent_ts and parent_ts != stored["ts"] else None
        if parent is not None:
            stored["parent_user_id"] = parent.get("user")
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            users = parent.setdefault("reply_users", [])
            who = stored.get("user") or stored.get("bot_id")
            if who not in users:
                users.append(who)
            parent["reply_users_count"] = len(users)
            if ts_key(stored["ts"]) >= ts_key(parent.get("latest_reply", "0")):
                parent["latest_reply"] = stored["ts"]
        return stored

    def update(self, conv: Conversation, ts: str, fields: dict[str, Any]) -> bool:
        message = conv.find(ts)
        if message is None:
            return False
        message.update(copy.deepcopy(fields))
        return True

    # --- the Web API methods ----------------------------------------------------------------------
    def _readable(self, params: dict[str, Any], scopes: tuple[str, ...]) -> Conversation | Body:
        conv = self.conversations.get(str(params.get("channel") or ""))
        if conv is None:
            return _error("channel_not_found")
        if HISTORY_SCOPE_OF[conv.kind] not in scopes:
            return missing_scope([HISTORY_SCOPE_OF[conv.kind]], scopes)
        if not conv.member:
            return _error("not_in_channel")
        return conv

    @staticmethod
    def _shown(message: dict[str, Any], all_metadata: bool) -> dict[str, Any]:
        """A message as a read returns it: its metadata whole with include_all_metadata, else only the
        event_type [OBS-3p: Automattic/matrix-appservice-slack #8, the slack-web-api crate's docs]."""
        shown = copy.deepcopy(message)
        if "metadata" in shown and not all_metadata:
            shown["metadata"] = {"event_type": shown["metadata"]["event_type"]}
        return shown

    def conversations_history(self, params: dict[str, Any], scopes: tuple[str, ...]) -> Body:
        conv = self._readable(params, scopes)
        if isinstance(conv, dict):
            return conv
        window = _window(params, HISTORY_LIMIT)
        if isinstance(window, dict):
            return window
        limit = window.limit
        picked = [
            m for key, m in zip(reversed(conv.keys), reversed(conv.messages), strict=True)
            if m.get("thread_ts") in (None, m["ts"]) and window.holds(key, newest_first=True)
        ]  # fmt: skip
        all_metadata = _flag(params.get("include_all_metadata"))
        body: dict[str, Any] = {
            "ok": True,
            "messages": [self._shown(m, all_metadata) for m in picked[:limit]],
            "has_more": len(picked) > limit,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": _encode("next_ts:", picked[limit]["ts"]) if picked[limit:] else ""},
        }
        if params.get("latest"):
            body["latest"] = str(params["latest"])
        return body

    def conversations_replies(
        self, params: dict[str, Any], scopes: tuple[str, ...], *, bot_reads_channel_threads: bool
    ) -> Body:
        conv = self._readable(params, scopes)
        if isinstance(conv, dict):
            return conv
        if conv.kind in CHANNEL_KINDS and not bot_reads_channel_threads:
            return _error("not_allowed_token_type")
        try:
            asked = conv.find(str(params.get("ts") or ""))
        except ValueError:
            asked = None
        if asked is None:
            return _error("thread_not_found")
        parent = conv.find(asked.get("thread_ts") or asked["ts"]) or asked
        window = _window(params, REPLIES_LIMIT)
        if isinstance(window, dict):
            return window
        replies = [
            m for key, m in zip(conv.keys, conv.messages, strict=True)
            if m.get("thread_ts") == parent["ts"] and m is not parent and window.holds(key, newest_first=False)
        ]  # fmt: skip
        page = replies[: max(window.limit - 1, 1)]  # the parent comes first on every page [INF], within `limit`
        more = replies[len(page) :]
        all_metadata = _flag(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self._shown(m, all_metadata) for m in [parent, *page]],
            "has_more": bool(more),
            "response_metadata": {"next_cursor": _encode("next_ts:", more[0]["ts"]) if more else ""},
        }

    def users_conversations(self, params: dict[str, Any], scopes: tuple[str, ...]) -> Body:
        types = [t.strip() for t in str(params.get("types") or "public_channel").split(",") if t.strip()]
        if not types or any(t not in KINDS for t in types):
            return _error("invalid_types")
        needed = [READ_SCOPE_OF[t] for t in types if READ_SCOPE_OF[t] not in scopes]
        if needed:
            return missing_scope(needed, scopes)
        position = _cursor(params.get("cursor"), "team:")
        if position is None:
            return _error("invalid_cursor")
        try:
            limit = _limit(params.get("limit"), LIST_LIMIT)
        except ValueError:
            return _error("invalid_limit")
        listed = [c for c in self.conversations.values() if c.member and c.kind in types]
        ids = [c.id for c in listed]
        if position and position not in ids:
            return _error("invalid_cursor")
        start = ids.index(position) if position else 0
        page, more = listed[start : start + limit], listed[start + limit :]
        return {
            "ok": True,
            "channels": [c.summary() for c in page],
            "response_metadata": {"next_cursor": _encode("team:", more[0].id) if more else ""},
        }


def mention_message(event: dict[str, Any]) -> dict[str, Any]:
    """The message an app_mention event is about, as history keeps it."""
    message = {k: event[k] for k in ("client_msg_id", "user", "text", "ts", "blocks", "thread_ts", "bot_id")
               if k in event}  # fmt: skip
    return {"type": "message", **message, "team": TEAM_ID}


def user_message(*, text: str, user: str, ts: str, thread_ts: str | None) -> dict[str, Any]:
    """A plain message by a user (no mention of the bot, so no event for it)."""
    message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": TEAM_ID}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return message
