"""One catch-up scan, pure and synchronous (Sans-I/O, like `nonstop.pipeline.core`): which Web API calls to make
next, what their answers mean, which mentions of the bot were never answered, and how far each conversation's
high-water mark may move once those mentions are injected.

The reads (docs/how-it-stays-online.md, "Catch-up", has the guarantee; docs/decisions.md the numbers):
- `users.conversations`: the conversations the bot is a member of, of the kinds the token may both list
  (`*:read`) and read (`*:history`) [DOC: the methods' "Scopes"], paginated.
- `conversations.history` per conversation, newest first, since its *floor*: the conversation's mark, or the
  look-back window's start if that is later [DOC: `oldest` is exclusive]. A *deep* scan (at start, after the
  links came back) reads the whole window instead, so that threads whose parent is older than the mark are seen.
- `conversations.replies` for each thread parent whose `latest_reply` is newer than the floor [DOC:
  conversations.history returns only parent messages], except a thread only the bot replied in (the parent's
  `reply_users`, all of them listed [DOC: `reply_users_count`]): no one else wrote there, so it holds no mention,
  and its parent has the bot's answer. Every answered mention is such a thread, so reading them cost a call per
  answer (docs/benchmark.md, "Catch-up"). Slack's page says a bot token may read threads in DMs
  and group DMs but "lacks sufficient permissions" in channels, while listing `channels:history` as its bot
  scope [DOC]; bots read channel threads in practice [OBS-3p]. A refusal there is noted once per scan and the
  channel's top-level messages still count: its thread mentions are then not recovered.

A mention is a message whose text holds `<@BOTUSERID>`, not posted by the bot itself, not a join/leave notice,
within the window, and not answered already (`answered`: the ts the bot's replies say they answer, from their
metadata). Each becomes an `app_mention` event envelope shaped as Slack's, known to the ledger by
`app_mention:<channel>:<ts>` (the same key a late delivery of that message gets), with a deterministic event id.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KIND_SCOPES", "PAGE", "Call", "Mention", "Scan", "envelope_for", "readable_kinds", "ts_key"]

PAGE = 200
"""Messages or conversations per call: Slack's pages go to 999 (history, users.conversations) and 1000 (replies)
[DOC]; 200 keeps one answer small while a busy hour still fits in a few calls."""

KIND_SCOPES: dict[str, tuple[str, str]] = {
    # kind (users.conversations' `types`): (scope to list it, scope to read it) [DOC: the methods' pages]
    "public_channel": ("channels:read", "channels:history"),
    "private_channel": ("groups:read", "groups:history"),
    "mpim": ("mpim:read", "mpim:history"),
    "im": ("im:read", "im:history"),
}
SKIPPED_SUBTYPES = frozenset({"channel_join", "channel_leave", "group_join", "group_leave", "bot_message"})
"""Messages that name the bot without asking it anything (its own joins) or that no app_mention is sent for."""


def readable_kinds(granted: Iterable[str]) -> tuple[str, ...]:
    """The conversation kinds a token with `granted` scopes may list and read."""
    have = set(granted)
    return tuple(kind for kind, (read, history) in KIND_SCOPES.items() if read in have and history in have)


def ts_key(ts: object) -> int:
    """A Slack ts ("1795777181.614270") as whole microseconds, exactly; -1 for anything else."""
    whole, _, frac = str(ts).strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return -1
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def _ts_text(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


@dataclass(frozen=True)
class Call:
    """One Web API call to make: `method` with `params`; `channel` the conversation it reads (None: the list)."""

    method: str
    params: dict[str, Any]
    channel: str | None = None


@dataclass(frozen=True)
class Mention:
    """A mention of the bot found in a conversation and not answered: the envelope to inject."""

    key: str  # the ledger's key: app_mention:<channel>:<ts>
    channel: str
    ts: str
    thread_ts: str | None
    envelope: dict[str, Any]


@dataclass
class _Conversation:
    floor: int  # messages newer than this are read (exclusive, microseconds)
    newest: int = -1  # the newest top-level message read
    top: list[dict[str, Any]] = field(default_factory=list)  # top-level messages and thread parents
    replies: list[dict[str, Any]] = field(default_factory=list)
    failed: str = ""  # why it could not be read (then its mark stays)


def event_id_for(channel: str, ts: str) -> str:
    """Deterministic: the same message found twice is one event ("EvCU" + a short hash of channel and ts)."""
    return "EvCU" + hashlib.sha256(f"{channel}:{ts}".encode()).hexdigest()[:12].upper()


def envelope_for(
    message: dict[str, Any], channel: str, *, team_id: str, bot_user_id: str, app_id: str | None
) -> dict[str, Any]:
    """The `events_api` envelope Slack would have sent for `message` (an Events API `event_callback`, token-less),
    marked `"nonstop": {"recovered": true}` for the pipeline."""
    ts = str(message["ts"])
    event: dict[str, Any] = {"type": "app_mention", "user": message.get("user"), "text": message.get("text", "")}
    event |= {"ts": ts, "channel": channel, "event_ts": ts}
    thread_ts = message.get("thread_ts")
    if thread_ts and thread_ts != ts:
        event["thread_ts"] = thread_ts
    for name in ("blocks", "client_msg_id", "team"):
        if name in message:
            event[name] = message[name]
    event_id = event_id_for(channel, ts)
    payload: dict[str, Any] = {"team_id": team_id, "event": event, "type": "event_callback", "event_id": event_id}
    payload["event_time"] = int(ts_key(ts) // 1_000_000)
    payload["authorizations"] = [{"team_id": team_id, "user_id": bot_user_id, "is_bot": True}]
    if app_id:
        payload["api_app_id"] = app_id
    return {
        "envelope_id": f"catch-up-{event_id}",
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": payload,
        "nonstop": {"recovered": True},
    }


class Scan:
    """One scan. Ask `next_call()` until it says None, hand each call's answer (Slack's JSON body, ok or not) to
    `answer()`; then read `mentions()`, inject them, and hand their outcomes to `marks()`.

    Args:
        bot_user_id, bot_id, team_id, app_id: who the bot is (auth.test); `app_id` may be unknown (None).
        marks: each conversation's high-water mark (a ts) from the ledger.
        window_s: how far back a scan looks, at most.
        now: the wall-clock time of the scan (seconds).
        kinds: the conversation kinds to read (`readable_kinds`).
        deep: read the whole window, not only since the marks.
        answered: the ts that the bot's replies among some messages say they answer.
    """

    def __init__(
        self,
        *,
        bot_user_id: str,
        team_id: str,
        marks: dict[str, str],
        window_s: float,
        now: float,
        kinds: tuple[str, ...],
        answered: Callable[[list[dict[str, Any]]], set[str]],
        bot_id: str | None = None,
        app_id: str | None = None,
        deep: bool = False,
        page: int = PAGE,
    ) -> None:
        self._bot = bot_user_id
        self._bot_id = bot_id
        self._team = team_id
        self._app = app_id
        self._marks = dict(marks)
        self._start = int((now - window_s) * 1_000_000)
        self._deep = deep
        self._answered = answered
        self._page = page
        self._kinds = kinds
        self._conversations: dict[str, _Conversation] = {}
        self._calls: deque[Call] = deque()
        self.errors: list[str] = []  # one short line per read that failed (for the scan's log line)
        self.calls_made = 0
        self.threads_unreadable: set[str] = set()
        if kinds:
            self._calls.append(Call("users.conversations", self._list_params(None)))

    # -- the calls -------------------------------------------------------------------------------

    def next_call(self) -> Call | None:
        """The next call to make, or None when the scan has read everything it can."""
        if not self._calls:
            return None
        self.calls_made += 1
        return self._calls.popleft()

    def _list_params(self, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"types": ",".join(self._kinds), "exclude_archived": "true", "limit": self._page}
        return params | ({"cursor": cursor} if cursor else {})

    def answer(self, call: Call, body: dict[str, Any]) -> None:
        """Slack's answer to `call` (its JSON body, `ok` true or false)."""
        cursor = str((body.get("response_metadata") or {}).get("next_cursor") or "")
        if call.method == "users.conversations":
            self._listed(call, body, cursor)
        elif call.channel is not None and call.channel in self._conversations:
            self._read(call, body, cursor)

    def _listed(self, call: Call, body: dict[str, Any], cursor: str) -> None:
        if not body.get("ok"):
            self.errors.append(f"users.conversations: {body.get('error', 'failed')}")
            return
        for conv in body.get("channels") or []:
            channel = conv.get("id") if isinstance(conv, dict) else None
            if not isinstance(channel, str) or not channel or channel in self._conversations:
                continue
            mark = ts_key(self._marks.get(channel, ""))
            floor = self._start if self._deep else max(self._start, mark)
            self._conversations[channel] = _Conversation(floor)
            self._calls.append(Call("conversations.history", self._read_params(channel, floor, None), channel))
        if cursor:
            self._calls.appendleft(Call(call.method, {**call.params, "cursor": cursor}))

    def _read_params(self, channel: str, floor: int, cursor: str | None, thread: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": channel, "oldest": _ts_text(max(0, floor))}
        params |= {"include_all_metadata": "true", "limit": self._page}
        if thread:
            params["ts"] = thread
        return params | ({"cursor": cursor} if cursor else {})

    def _read(self, call: Call, body: dict[str, Any], cursor: str) -> None:
        channel = call.channel
        assert channel is not None
        conv = self._conversations[channel]
        if not body.get("ok"):
            error = str(body.get("error", "failed"))
            if call.method == "conversations.history":
                conv.failed = error
                self.errors.append(f"{channel}: {error}")
            elif channel not in self.threads_unreadable:
                self.threads_unreadable.add(channel)
                self.errors.append(f"{channel} threads: {error}")
            return
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict) and ts_key(m.get("ts")) > 0]
        if call.method == "conversations.history":
            conv.top.extend(messages)
            for message in messages:
                key = ts_key(message["ts"])
                conv.newest = max(conv.newest, key)
                if (
                    ts_key(message.get("latest_reply")) > conv.floor
                    and channel not in self.threads_unreadable
                    and not self._bot_only_thread(message)
                ):
                    params = self._read_params(channel, conv.floor, None, thread=str(message["ts"]))
                    self._calls.append(Call("conversations.replies", params, channel))
        else:
            conv.replies.extend(m for m in messages if m.get("ts") != call.params.get("ts"))
        if cursor:  # the next page of the same read, before anything else
            self._calls.appendleft(Call(call.method, {**call.params, "cursor": cursor}, channel))

    # -- the results -----------------------------------------------------------------------------

    def _bot_only_thread(self, message: dict[str, Any]) -> bool:
        """A thread parent whose replies are all the bot's (every replier listed)."""
        users = message.get("reply_users")
        if not message.get("reply_count") or not isinstance(users, list) or not users:
            return False
        return message.get("reply_users_count", len(users)) == len(users) and set(users) <= {self._bot}

    def _is_mention(self, message: dict[str, Any], floor: int) -> bool:
        text = message.get("text")
        return (
            isinstance(text, str)
            and f"<@{self._bot}>" in text
            and message.get("user") not in (None, self._bot)
            and not (self._bot_id and message.get("bot_id") == self._bot_id)
            and message.get("subtype") not in SKIPPED_SUBTYPES
            and ts_key(message.get("ts")) > floor
        )

    def mentions(self) -> list[Mention]:
        """The mentions found and not answered, oldest first within each conversation."""
        found: list[Mention] = []
        for channel, conv in self._conversations.items():
            if conv.failed:
                continue
            messages = conv.top + conv.replies
            answered = self._answered(messages) | {str(m["ts"]) for m in conv.top if self._bot_only_thread(m)}
            for message in sorted(messages, key=lambda m: ts_key(m["ts"])):
                ts = str(message["ts"])
                if ts in answered or not self._is_mention(message, max(conv.floor, self._start)):
                    continue
                envelope = envelope_for(message, channel, team_id=self._team, bot_user_id=self._bot, app_id=self._app)
                thread_ts = envelope["payload"]["event"].get("thread_ts")
                found.append(Mention(f"app_mention:{channel}:{ts}", channel, ts, thread_ts, envelope))
        return found

    def marks(self, outcomes: dict[str, str]) -> dict[str, str]:
        """The marks to advance to, given each mention's outcome by key ("new", "duplicate" or "refused"; a
        mention without one was not injected). A conversation's mark moves to the newest top-level message read,
        or, when a mention was not taken, to the newest one before it (its thread's parent, for a reply), so the
        next scan reads it again. Marks only move forward."""
        blocked: dict[str, int] = {}
        for mention in self.mentions():
            if outcomes.get(mention.key) not in ("new", "duplicate"):
                at = ts_key(mention.thread_ts or mention.ts)
                blocked[mention.channel] = min(blocked.get(mention.channel, at), at)
        moved: dict[str, str] = {}
        for channel, conv in self._conversations.items():
            if conv.failed:
                continue
            limit = blocked.get(channel)
            keys = [ts_key(m["ts"]) for m in conv.top]
            newest = max((k for k in keys if limit is None or k < limit), default=-1)
            if newest > ts_key(self._marks.get(channel, "")):
                moved[channel] = _ts_text(newest)
        return moved

    @property
    def conversations(self) -> int:
        return len(self._conversations)
