"""Conversations and their history (sandbox/history.py), read with slack_sdk's WebClient over HTTP:
mentions and the bot's posts are messages, threads keep their counts, users.conversations /
conversations.history / conversations.replies page and filter as Slack's, and an incident records mentions
it never delivers."""

from __future__ import annotations

import dataclasses

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, BOT_USER_ID, GENERAL_CHANNEL, HISTORY_SCOPES, HUMAN_USER_ID, READ_SCOPES
from sandbox.remote import RemoteSandbox
from sandbox.testing import TEST_CONFIG, raw_connect, recv_json

READER = [*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES]
REPLY = {"event_type": "nonstop_reply", "event_payload": {"event_id": "Ev1", "index": 0}}


def client(sb: Sandbox) -> WebClient:
    return WebClient(token=sb.bot_token, base_url=sb.api_url, retry_handlers=[])


def error_of(call: object) -> dict:
    with pytest.raises(SlackApiError) as exc:
        call()  # type: ignore[operator]
    return dict(exc.value.response.data)


@pytest.fixture
def reader(sandbox: Sandbox) -> WebClient:
    """A bot token that may read its conversations (history and read scopes granted)."""
    sandbox.set_scopes(READER)
    return client(sandbox)


def test_mentions_and_posts_are_messages_in_history(sandbox: Sandbox, reader: WebClient) -> None:
    first = sandbox.mention("ping")
    second = sandbox.mention("status")
    posted = reader.chat_postMessage(channel=GENERAL_CHANNEL, text="pong", metadata=REPLY)
    page = reader.conversations_history(channel=GENERAL_CHANNEL, include_all_metadata=True)
    assert [m["ts"] for m in page["messages"]] == [posted["ts"], second.ts, first.ts], "newest first"
    bot, human = page["messages"][0], page["messages"][2]
    assert (bot["user"], bot["bot_id"], bot["text"], bot["metadata"]) == (BOT_USER_ID, "B0EMUL001", "pong", REPLY)
    assert (human["user"], human["text"]) == (HUMAN_USER_ID, f"<@{BOT_USER_ID}> ping")
    assert "bot_id" not in human
    assert (page["has_more"], page["response_metadata"]["next_cursor"]) == (False, "")
    assert sandbox.history(GENERAL_CHANNEL)[-1]["metadata"] == REPLY


def test_reading_needs_the_history_scope_of_the_conversations_kind(sandbox: Sandbox) -> None:
    sandbox.mention("ping")
    body = error_of(lambda: client(sandbox).conversations_history(channel=GENERAL_CHANNEL))
    assert body == {"ok": False, "error": "missing_scope", "needed": "channels:history", "provided": BOT_SCOPES}
    sandbox.set_scopes([*BOT_SCOPES.split(","), "channels:history"])
    assert client(sandbox).conversations_history(channel=GENERAL_CHANNEL)["messages"]
    body = error_of(lambda: client(sandbox).conversations_history(channel="D0HUMAN01"))
    assert (body["error"], body["needed"]) == ("missing_scope", "im:history")


def test_a_thread_keeps_its_counts_and_reads_parent_first(sandbox: Sandbox, reader: WebClient) -> None:
    parent = sandbox.mention("ping")
    pong = reader.chat_postMessage(channel=GENERAL_CHANNEL, text="pong", thread_ts=parent.ts)
    again = sandbox.mention("ping again", thread_ts=parent.ts)
    top = reader.conversations_history(channel=GENERAL_CHANNEL)["messages"]
    assert [m["ts"] for m in top] == [parent.ts], "history lists top-level messages and thread parents only"
    assert top[0]["reply_count"] == 2
    assert top[0]["reply_users"] == [BOT_USER_ID, HUMAN_USER_ID]
    assert (top[0]["reply_users_count"], top[0]["latest_reply"], top[0]["thread_ts"]) == (2, again.ts, parent.ts)
    thread = reader.conversations_replies(channel=GENERAL_CHANNEL, ts=parent.ts)["messages"]
    assert [m["ts"] for m in thread] == [parent.ts, pong["ts"], again.ts]
    assert [m.get("parent_user_id") for m in thread[1:]] == [HUMAN_USER_ID, HUMAN_USER_ID]
    by_reply = reader.conversations_replies(channel=GENERAL_CHANNEL, ts=pong["ts"])["messages"]
    assert [m["ts"] for m in by_reply] == [m["ts"] for m in thread], "a reply's ts finds its whole thread"
    lone = sandbox.user_message("no thread here")
    assert [m["ts"] for m in reader.conversations_replies(channel=GENERAL_CHANNEL, ts=lone)["messages"]] == [lone]
    assert error_of(lambda: reader.conversations_replies(channel=GENERAL_CHANNEL, ts="1.000001"))["error"] == (
        "thread_not_found"
    )


def test_history_pages_with_a_cursor(sandbox: Sandbox, reader: WebClient) -> None:
    sent = [sandbox.user_message(f"m{i}") for i in range(7)]
    pages = [reader.conversations_history(channel=GENERAL_CHANNEL, limit=3)]
    while pages[-1]["has_more"]:
        cursor = pages[-1]["response_metadata"]["next_cursor"]
        pages.append(reader.conversations_history(channel=GENERAL_CHANNEL, limit=3, cursor=cursor))
    assert [len(p["messages"]) for p in pages] == [3, 3, 1]
    assert [m["ts"] for p in pages for m in p["messages"]] == sent[::-1]
    assert pages[-1]["response_metadata"]["next_cursor"] == ""
    iterated = [m["ts"] for page in reader.conversations_history(channel=GENERAL_CHANNEL, limit=2) for m in
                page["messages"]]  # fmt: skip
    assert iterated == sent[::-1], "slack_sdk's own pagination walks the same pages"
    assert error_of(lambda: reader.conversations_history(channel=GENERAL_CHANNEL, cursor="bm9wZQ=="))["error"] == (
        "invalid_cursor"
    )


def test_history_filters_by_oldest_latest_and_inclusive(sandbox: Sandbox, reader: WebClient) -> None:
    ts = [sandbox.user_message(f"m{i}") for i in range(5)]

    def read(**kwargs: object) -> list[str]:
        return [m["ts"] for m in reader.conversations_history(channel=GENERAL_CHANNEL, **kwargs)["messages"]]

    assert read(oldest=ts[1], latest=ts[3]) == [ts[2]], "both bounds exclusive by default"
    assert read(oldest=ts[1], latest=ts[3], inclusive=True) == [ts[3], ts[2], ts[1]]
    assert read(oldest=ts[3]) == [ts[4]]
    assert read(latest=ts[1]) == [ts[0]]
    answer = reader.conversations_history(channel=GENERAL_CHANNEL, latest=ts[1])
    assert answer["latest"] == ts[1]
    assert error_of(lambda: read(oldest="yesterday"))["error"] == "invalid_ts_oldest"


def test_metadata_is_whole_only_with_include_all_metadata(sandbox: Sandbox, reader: WebClient) -> None:
    parent = sandbox.mention("ping")
    reader.chat_postMessage(channel=GENERAL_CHANNEL, text="pong", thread_ts=parent.ts, metadata=REPLY)
    reader.chat_postMessage(channel=GENERAL_CHANNEL, text="top", metadata=REPLY)
    top = reader.conversations_history(channel=GENERAL_CHANNEL)["messages"][0]
    assert top["metadata"] == {"event_type": "nonstop_reply"}
    assert reader.conversations_history(channel=GENERAL_CHANNEL, include_all_metadata=True)["messages"][0][
        "metadata"
    ] == REPLY  # fmt: skip
    reply = reader.conversations_replies(channel=GENERAL_CHANNEL, ts=parent.ts, include_all_metadata=True)
    assert reply["messages"][1]["metadata"] == REPLY


def test_replies_page_with_the_parent_first_on_every_page(sandbox: Sandbox, reader: WebClient) -> None:
    parent = sandbox.mention("ping")
    replies = [sandbox.user_message(f"r{i}", thread_ts=parent.ts) for i in range(5)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = reader.conversations_replies(channel=GENERAL_CHANNEL, ts=parent.ts, limit=3, cursor=cursor)
        assert page["messages"][0]["ts"] == parent.ts
        seen += [m["ts"] for m in page["messages"][1:]]
        cursor = page["response_metadata"]["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == replies
    later = reader.conversations_replies(channel=GENERAL_CHANNEL, ts=parent.ts, oldest=replies[2])["messages"]
    assert [m["ts"] for m in later] == [parent.ts, replies[3], replies[4]]


def test_users_conversations_lists_the_bots_conversations_by_type(sandbox: Sandbox, reader: WebClient) -> None:
    remote = RemoteSandbox(sandbox.control_url)
    remote.add_conversation(channel="G0SECRET", kind="private_channel", name="secret")
    remote.add_conversation(channel="C0ELSE", name="elsewhere", member=False)

    def listed(**kwargs: object) -> list[str]:
        return [c["id"] for c in reader.users_conversations(**kwargs)["channels"]]

    assert listed() == [GENERAL_CHANNEL], "public channels by default; not C0RANDOM or C0ELSE (not a member)"
    assert listed(types="public_channel,private_channel,im") == [GENERAL_CHANNEL, "D0HUMAN01", "G0SECRET"]
    first = reader.users_conversations(types="public_channel,private_channel,im", limit=1)
    assert (first["channels"][0]["id"], first["channels"][0]["is_channel"]) == (GENERAL_CHANNEL, True)
    ids = [c["id"] for page in reader.users_conversations(types="public_channel,private_channel,im", limit=1)
           for c in page["channels"]]  # fmt: skip
    assert ids == [GENERAL_CHANNEL, "D0HUMAN01", "G0SECRET"]
    im = reader.users_conversations(types="im")["channels"][0]
    assert (im["is_im"], im["user"]) == (True, HUMAN_USER_ID)
    assert error_of(lambda: reader.users_conversations(types="rooms"))["error"] == "invalid_types"
    sandbox.set_scopes([*BOT_SCOPES.split(","), "channels:read"])
    body = error_of(lambda: client(sandbox).users_conversations(types="public_channel,im,mpim"))
    assert (body["error"], body["needed"]) == ("missing_scope", "im:read,mpim:read")


def test_a_conversation_the_bot_is_not_in(sandbox: Sandbox, reader: WebClient) -> None:
    assert error_of(lambda: reader.conversations_history(channel="C0RANDOM"))["error"] == "not_in_channel"
    assert error_of(lambda: reader.chat_postMessage(channel="C0RANDOM", text="hi"))["error"] == "not_in_channel"
    assert sandbox.history("C0RANDOM") == [], "nothing posted"
    assert error_of(lambda: reader.conversations_history(channel="C0NOWHERE"))["error"] == "channel_not_found"
    assert reader.chat_postMessage(channel="C0NEW", text="hi")["ok"], "a channel a test names exists, bot in it"
    assert reader.chat_postMessage(channel=HUMAN_USER_ID, text="psst")["channel"] == "D0HUMAN01", "a user id: the DM"


def test_chat_update_edits_the_message_slack_holds(sandbox: Sandbox, reader: WebClient) -> None:
    posted = reader.chat_postMessage(channel=GENERAL_CHANNEL, text="draft", metadata=REPLY)
    reader.chat_update(channel=GENERAL_CHANNEL, ts=posted["ts"], text="final")
    [message] = sandbox.history(GENERAL_CHANNEL)
    assert (message["text"], message["metadata"]) == ("final", REPLY)


def test_history_methods_are_tier_3(sandbox: Sandbox, reader: WebClient) -> None:
    sandbox.set_rate_limits(on=True, tier_per_minute=[1, 20, 2, 100])
    assert reader.conversations_history(channel=GENERAL_CHANNEL)["ok"]
    assert reader.conversations_history(channel=GENERAL_CHANNEL)["ok"]
    with pytest.raises(SlackApiError) as exc:
        reader.conversations_history(channel=GENERAL_CHANNEL)
    assert (exc.value.response.status_code, exc.value.response.headers["Retry-After"]) == (429, "30")
    assert reader.users_conversations()["ok"], "each method has its own bucket"
    parent = sandbox.mention("ping")
    assert reader.conversations_replies(channel=GENERAL_CHANNEL, ts=parent.ts)["ok"]


def test_bot_tokens_reading_channel_threads_can_be_refused(no_proxy_env: None) -> None:
    config = dataclasses.replace(TEST_CONFIG, bot_reads_channel_threads=False, bot_scopes=tuple(READER))
    with Sandbox(config) as sb:
        in_channel = sb.mention("ping")
        in_dm = sb.mention("ping", channel="D0HUMAN01")
        with pytest.raises(SlackApiError, match="not_allowed_token_type"):
            client(sb).conversations_replies(channel=GENERAL_CHANNEL, ts=in_channel.ts)
        assert client(sb).conversations_replies(channel="D0HUMAN01", ts=in_dm.ts)["ok"], "DMs: allowed [DOC]"


def test_an_incident_records_mentions_it_never_delivers(sandbox: Sandbox, reader: WebClient) -> None:
    remote = RemoteSandbox(sandbox.control_url)
    with raw_connect(sandbox) as ws:
        assert recv_json(ws)["type"] == "hello"
        sandbox.wait_for_connections(1)
        remote.incident()
        lost = [sandbox.mention(f"lost {i}") for i in range(3)]
        assert {sandbox.delivery(d).outcome for d in lost} == {"dropped"}
        assert [d.envelope_id for d in lost] == [None] * 3
        assert sandbox.connections(live_only=True)[0].envelopes_sent == 0, "the link is up and carries nothing"
        remote.end_incident()
        after = sandbox.mention("after")
        envelope = recv_json(ws)
        assert envelope["payload"]["event"]["ts"] == after.ts, "the first envelope since: the one after it"
        ws.send(f'{{"envelope_id": "{envelope["envelope_id"]}"}}')
        sandbox.wait_for_outcome(after)
    texts = [m["text"] for m in reader.conversations_history(channel=GENERAL_CHANNEL)["messages"]]
    assert texts == [f"<@{BOT_USER_ID}> {t}" for t in ("after", "lost 2", "lost 1", "lost 0")]


def test_an_incident_ends_by_itself(sandbox: Sandbox) -> None:
    sandbox.incident(seconds=0.2)
    assert sandbox.delivery(sandbox.mention("during")).outcome == "dropped"
    sandbox.wait_until(lambda: not sandbox.incident_active(), what="the incident's end")
    assert sandbox.delivery(sandbox.mention("after")).outcome == "pending", "no bot connected: held, not dropped"


def test_a_mention_slack_gives_up_on_is_still_in_history(no_proxy_env: None) -> None:
    config = dataclasses.replace(TEST_CONFIG, ack_deadline_s=0.2, retry_delays_s=(0.0, 0.1, 0.1))
    with Sandbox(config) as sb:  # no bot connected: every attempt finds no connection
        d = sb.mention("anyone?")
        assert sb.wait_for_outcome(d, outcomes=("exhausted",)).outcome == "exhausted"
        assert [m["ts"] for m in sb.history(GENERAL_CHANNEL)] == [d.ts]
