"""The scan's core against the sandbox's model of Slack's conversations (sandbox/history.py): real pages, real
cursors, real thread bookkeeping; no network. Each test says what a scan must find, or must not."""

from __future__ import annotations

import time
from typing import Any

from nonstop.catchup.core import KIND_SCOPES, Call, Scan, envelope_for, event_id_for, readable_kinds
from nonstop.outbound.marks import answered_ts, metadata_of
from sandbox.config import BOT_ID, BOT_USER_ID, HUMAN_USER_ID, TEAM_ID
from sandbox.history import History, user_message

ALL_SCOPES = tuple(scope for pair in KIND_SCOPES.values() for scope in pair)
GENERAL = "C0GENERAL"


class Clock:
    def __init__(self) -> None:
        self.now = time.time() - 600

    def ts(self, step: float = 1.0) -> str:
        self.now += step
        return f"{self.now:.6f}"


def say(history: History, clock: Clock, text: str, *, channel: str = GENERAL, thread: str | None = None,
        user: str = HUMAN_USER_ID, **extra: Any) -> str:  # fmt: skip
    ts = clock.ts()
    history.record(history.resolve(channel), user_message(text=text, user=user, ts=ts, thread_ts=thread) | extra)
    return ts


def mention(history: History, clock: Clock, text: str = "ping", **kw: Any) -> str:
    return say(history, clock, f"<@{BOT_USER_ID}> {text}", **kw)


def answer(history: History, clock: Clock, ts: str, channel: str = GENERAL) -> str:
    """The bot's reply in the mention's thread, with the metadata saying what it answers."""
    meta = metadata_of("Ev1", 0, ts)
    return say(history, clock, "pong", channel=channel, thread=ts, user=BOT_USER_ID, bot_id=BOT_ID, metadata=meta)


def scan(history: History, marks: dict[str, str] | None = None, *, window_s: float = 3600, deep: bool = False,
         page: int = 200, scopes: tuple[str, ...] = ALL_SCOPES, channel_threads: bool = True,
         fail: set[str] = frozenset()) -> tuple[Scan, list[Call]]:  # fmt: skip
    s = Scan(bot_user_id=BOT_USER_ID, bot_id=BOT_ID, team_id=TEAM_ID, marks=marks or {}, window_s=window_s,
             now=time.time(), kinds=readable_kinds(scopes), answered=answered_ts, deep=deep, page=page)  # fmt: skip
    calls = []
    while (call := s.next_call()) is not None:
        calls.append(call)
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in call.params.items()}
        if call.channel in fail:
            body = {"ok": False, "error": "fatal_error"}
        elif call.method == "users.conversations":
            body = history.users_conversations(params, scopes)
        elif call.method == "conversations.history":
            body = history.conversations_history(params, scopes)
        else:
            body = history.conversations_replies(params, scopes, bot_reads_channel_threads=channel_threads)
        s.answer(call, body)
    return s, calls


def found(s: Scan) -> list[str]:
    return [m.ts for m in s.mentions()]


def test_unanswered_mentions_are_found_and_answered_ones_and_plain_messages_are_not() -> None:
    h, c = History(), Clock()
    done = mention(h, c, "ping 1")
    answer(h, c, done)
    say(h, c, "just chatting")
    owed = [mention(h, c, "ping 2"), mention(h, c, "ping 3", channel="C0OTHER")]
    s, _ = scan(h)
    assert sorted(found(s)) == sorted(owed)
    assert {m.channel for m in s.mentions()} == {GENERAL, "C0OTHER"}


def test_the_bots_own_posts_and_join_notices_are_not_mentions() -> None:
    h, c = History(), Clock()
    say(h, c, f"<@{BOT_USER_ID}> quoting myself", user=BOT_USER_ID, bot_id=BOT_ID)
    say(h, c, f"<@{BOT_USER_ID}> has joined the channel", subtype="channel_join")
    say(h, c, f"<@{BOT_USER_ID}> from another app", user="U0OTHERBOT", bot_id="B0OTHER", subtype="bot_message")
    s, _ = scan(h)
    assert found(s) == []


def test_pages_are_followed_in_the_list_and_in_history() -> None:
    h, c = History(), Clock()
    for i in range(5):
        h.add(f"C0CHAN{i}", "public_channel")
    owed = [mention(h, c, f"ping {i}", channel=f"C0CHAN{i % 5}") for i in range(23)]
    s, calls = scan(h, page=3)
    assert sorted(found(s)) == sorted(owed)
    assert sum(1 for call in calls if call.method == "users.conversations") == 3  # 7 conversations, 3 a page
    assert sum(1 for call in calls if call.method == "conversations.history") > 7  # some took several pages


def test_mentions_in_threads_are_found_through_replies_and_carry_thread_ts() -> None:
    h, c = History(), Clock()
    parent = say(h, c, "a question for everyone")
    answered_reply = mention(h, c, "ping in thread", thread=parent)
    answer(h, c, answered_reply)
    owed = mention(h, c, "status in thread", thread=parent)
    s, calls = scan(h)
    assert found(s) == [owed]
    event = s.mentions()[0].envelope["payload"]["event"]
    assert event["thread_ts"] == parent
    assert any(call.method == "conversations.replies" and call.params["ts"] == parent for call in calls)


def test_a_channel_whose_threads_a_bot_may_not_read_still_gives_its_top_level_mentions() -> None:
    h, c = History(), Clock()
    parent = say(h, c, "thread")
    mention(h, c, "in thread", thread=parent)
    top = mention(h, c, "top level")
    s, _ = scan(h, channel_threads=False)
    assert found(s) == [top]
    assert s.threads_unreadable == {GENERAL}
    assert any("threads" in e for e in s.errors)


def test_the_window_bounds_how_far_back_a_scan_looks() -> None:
    h, c = History(), Clock()
    mention(h, c, "too old")
    c.now += 400
    recent = mention(h, c, "recent")
    s, calls = scan(h, window_s=300)
    assert found(s) == [recent]
    history_call = next(call for call in calls if call.method == "conversations.history")
    assert float(history_call.params["oldest"]) > time.time() - 301


def test_a_shallow_scan_reads_since_the_mark_and_a_deep_one_the_whole_window() -> None:
    h, c = History(), Clock()
    before = mention(h, c, "before the mark")
    mark = say(h, c, "the newest message the last scan read")
    after = mention(h, c, "after the mark")
    assert found(scan(h, {GENERAL: mark})[0]) == [after]
    assert found(scan(h, {GENERAL: mark}, deep=True)[0]) == [before, after]


def test_marks_move_to_the_newest_message_read_once_every_mention_was_taken() -> None:
    h, c = History(), Clock()
    first = mention(h, c, "one")
    second = mention(h, c, "two")
    newest = say(h, c, "chatter")
    s, _ = scan(h, {GENERAL: "1.000000"})
    keys = [m.key for m in s.mentions()]
    assert keys == [f"app_mention:{GENERAL}:{first}", f"app_mention:{GENERAL}:{second}"]
    assert s.marks({keys[0]: "new", keys[1]: "duplicate"}) == {GENERAL: newest}
    assert s.marks({keys[0]: "new", keys[1]: "refused"}) == {GENERAL: first}, "not past a refused one"
    assert s.marks({keys[0]: "refused"}) == {}, "nothing before it to move to: the mark stays"


def test_a_refused_reply_in_a_thread_holds_the_mark_before_its_parent() -> None:
    h, c = History(), Clock()
    earlier = say(h, c, "earlier")
    parent = say(h, c, "thread parent")
    reply = mention(h, c, "in thread", thread=parent)
    s, _ = scan(h)
    assert s.marks({f"app_mention:{GENERAL}:{reply}": "refused"}) == {GENERAL: earlier}


def test_marks_never_move_back_and_a_failed_read_moves_none() -> None:
    h, c = History(), Clock()
    say(h, c, "old")
    s, _ = scan(h, {GENERAL: f"{time.time() + 60:.6f}"}, deep=True)
    assert s.marks({}) == {}
    h.add("C0SECRET", "public_channel")
    mention(h, c, "in a channel whose read fails", channel="C0SECRET")
    s, _ = scan(h, fail={"C0SECRET"})
    assert s.mentions() == []
    assert GENERAL in s.marks({})
    assert "C0SECRET" not in s.marks({})
    assert s.errors == ["C0SECRET: fatal_error"]


def test_without_scopes_to_list_and_read_there_is_nothing_to_call() -> None:
    assert readable_kinds(("channels:history",)) == ()
    assert readable_kinds(("im:read", "im:history", "channels:read")) == ("im",)
    s = Scan(bot_user_id=BOT_USER_ID, team_id=TEAM_ID, marks={}, window_s=60, now=time.time(), kinds=(),
             answered=answered_ts)  # fmt: skip
    assert s.next_call() is None
    assert s.mentions() == []


def test_the_envelope_is_shaped_as_slacks_with_a_deterministic_id() -> None:
    message = {"type": "message", "user": HUMAN_USER_ID, "text": f"<@{BOT_USER_ID}> hi", "ts": "1795777181.614270",
               "thread_ts": "1795777100.000100", "blocks": [{"type": "rich_text"}], "team": TEAM_ID}  # fmt: skip
    envelope = envelope_for(message, GENERAL, team_id=TEAM_ID, bot_user_id=BOT_USER_ID, app_id="A1")
    payload = envelope["payload"]
    assert envelope["type"] == "events_api"
    assert envelope["nonstop"] == {"recovered": True}
    assert "token" not in payload
    assert payload["type"] == "event_callback"
    assert payload["api_app_id"] == "A1"
    assert (
        payload["event_id"]
        == event_id_for(GENERAL, "1795777181.614270")
        == envelope_for(message, GENERAL, team_id=TEAM_ID, bot_user_id=BOT_USER_ID, app_id=None)["payload"]["event_id"]
    )
    assert payload["event_id"].startswith("EvCU")
    assert payload["event_id"] != event_id_for("C2", "1795777181.614270")
    assert payload["event_time"] == 1795777181
    assert payload["event"] == {
        "type": "app_mention", "user": HUMAN_USER_ID, "text": message["text"], "ts": message["ts"],
        "channel": GENERAL, "event_ts": message["ts"], "thread_ts": message["thread_ts"],
        "blocks": message["blocks"], "team": TEAM_ID,
    }  # fmt: skip


def test_a_thread_only_the_bot_replied_in_is_not_read_and_its_parent_counts_as_answered() -> None:
    h, c = History(), Clock()
    answered = [mention(h, c, f"ping {i}") for i in range(5)]
    for ts in answered:
        say(h, c, "pong", thread=ts, user=BOT_USER_ID, bot_id=BOT_ID)  # no metadata: an answer of an older version
    talked = mention(h, c, "ping with a talk after")
    answer(h, c, talked)
    later = say(h, c, f"and again <@{BOT_USER_ID}>", thread=talked)  # someone else wrote in that thread
    s, calls = scan(h)
    assert [call.params["ts"] for call in calls if call.method == "conversations.replies"] == [talked]
    assert found(s) == [later]
