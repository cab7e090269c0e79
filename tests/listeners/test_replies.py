import json
import re

import pytest

from listeners.replies import (
    error_ref,
    event_delay_ms,
    help_reply,
    hint_reply,
    home_view,
    human_duration,
    late_note,
    late_words,
    parse_subcommand,
    pong_reply,
    reply_for,
    reply_thread_ts,
    sorry_reply,
    status_reply,
)
from nonstop.status import ClusterView, Drop, Replica, Snapshot
from nonstop.status.snapshot import CatchUpView
from nonstop.status.state import State

NOW = 1_700_010_000.0


def make_snapshot(**overrides) -> Snapshot:
    values = {
        "started_at": NOW - (3 * 3600 + 12 * 60 + 7),
        "now": NOW,
        "live_connections": 2,
        "target_connections": 2,
        "connected_since": NOW - 41,
        "last_inbound_at": NOW - 1,
        "reconnects_by_cause": {"reset": 2, "half_open": 1, "refresh": 3},
        "last_drop": Drop(
            at=NOW - 41,
            cause="reset",
            explanation="1006 abnormal closure: no close frame, the link just died",
            connection_age_s=5400,
        ),
        "envelopes_handled": 1234,
        "duplicates_suppressed": 7,
        "state": State.CONNECTED,
        "last_rtt_ms": 38.4,
        "last_beat_at": NOW - 1,
    }
    values.update(overrides)
    return Snapshot(**values)


def all_block_text(blocks) -> str:
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(field["text"] for field in block.get("fields", []))
        texts.extend(element["text"] for element in block.get("elements", []))
    return "\n".join(texts)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U0BOT0001> ping", ("ping", "")),
        ("<@U0BOT0001|nonstop>   PING  ", ("ping", "")),
        ("  <@U0BOT0001> <@U0BOT0001>\tStatus please", ("status", "please")),
        ("<@u0bot0001> help", ("help", "")),
        ("<@U0BOT0001>", ("", "")),
        ("<@U0BOT0001>   \n ", ("", "")),
        ("", ("", "")),
        (None, ("", "")),
        ("ping", ("ping", "")),
        ("Deploy <@U0OTHER01> api", ("deploy", "<@U0OTHER01> api")),
    ],
)
def test_parse_subcommand_strips_leading_mentions(text, expected):
    assert parse_subcommand(text) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0 s"),
        (41.9, "41 s"),
        (-5, "0 s"),
        (65, "1m 5s"),
        (3 * 3600 + 12 * 60 + 59, "3h 12m"),
        (2 * 86400 + 4 * 3600, "2d 4h"),
    ],
)
def test_human_duration(seconds, expected):
    assert human_duration(seconds) == expected


def test_event_delay_is_measured_from_slack_ts_and_never_negative():
    assert event_delay_ms("1700000000.000100", 1700000000.250100) == pytest.approx(250.0)
    assert event_delay_ms("1700000001.000000", 1700000000.0) == 0.0
    assert event_delay_ms(None, NOW) is None
    assert event_delay_ms("not-a-ts", NOW) is None


def test_pong_reports_delay_and_websocket_rtt():
    reply = pong_reply(now=NOW, rtt_ms=38.4, event_ts=f"{NOW - 0.25:.6f}")
    assert reply.text.startswith("pong")
    assert "250 ms" in reply.text
    assert "38 ms" in reply.text


def test_pong_without_event_ts_or_rtt_is_just_pong():
    assert pong_reply(now=NOW, rtt_ms=None).text == "pong"


def test_status_renders_every_fact_in_text_and_blocks():
    reply = status_reply(make_snapshot())
    assert reply.blocks is not None
    for rendered in (reply.text, all_block_text(reply.blocks)):
        assert "3h 12m" in rendered  # uptime
        assert "41 s" in rendered  # connected for / last drop
        assert "2 of 2" in rendered
        assert "6 (refresh 3, reset 2, half_open 1)" in rendered
        assert "1234" in rendered
        assert "Duplicates suppressed" in rendered
        assert "1006 abnormal closure: no close frame, the link just died" in rendered
        assert "connected" in rendered
        assert "38 ms" in rendered
    assert "never" not in reply.text


def test_status_blocks_are_section_fields_and_context_within_slack_limits():
    blocks = status_reply(make_snapshot()).blocks
    assert blocks is not None
    assert [block["type"] for block in blocks] == ["section", "section", "section", "context"]
    fields = blocks[1]["fields"]
    assert 0 < len(fields) <= 10  # Slack rejects more than 10 fields per section
    assert all(len(field["text"]) <= 2000 for field in fields)


def test_status_before_any_drop_says_never_and_handles_no_connection():
    reply = status_reply(
        make_snapshot(
            last_drop=None,
            reconnects_by_cause={},
            connected_since=None,
            live_connections=0,
            state=State.CONNECTING,
            last_rtt_ms=None,
        )
    )
    assert re.search(r"Last drop: never", reply.text)
    assert "*Last drop*\nnever" in all_block_text(reply.blocks or [])
    assert "Reconnects: 0\n" in reply.text
    assert "not connected" in reply.text
    assert "0 of 2" in reply.text
    assert "WebSocket ping: unknown" in reply.text


def test_status_shows_the_cluster_replica_by_replica():
    cluster = ClusterView(
        replicas=(
            Replica("web-7f9c-a", 2, NOW - 3600, 812, this_one=True),
            Replica("web-7f9c-b", 1, NOW - 90, 17),
        ),
        budget=10,
        allowed=2,
        redis_reachable=False,
        ghost_connections=1,
    )
    reply = status_reply(make_snapshot(cluster=cluster))
    assert reply.blocks is not None
    assert [block["type"] for block in reply.blocks] == ["section", "section", "section", "section", "context"]
    for rendered in (reply.text, all_block_text(reply.blocks)):
        assert "2 replica(s) hold 3 of Slack's 10 connections; this one may hold 2" in rendered
        assert "web-7f9c-a (this one): 2 connection(s), up 1h 0m, 812 envelope(s) handled" in rendered
        assert "web-7f9c-b: 1 connection(s), up 1m 30s, 17 envelope(s) handled" in rendered
        assert "Redis unreachable" in rendered
        assert "1 connection(s) held by another process" in rendered


def test_status_of_a_standby_says_so():
    cluster = ClusterView(replicas=(Replica("a", 0, NOW - 5, 0, this_one=True),), budget=10, allowed=0,
                          redis_reachable=True)  # fmt: skip
    assert "this one may hold 0 (standby)" in status_reply(make_snapshot(cluster=cluster)).text


def test_status_escapes_explanations_for_mrkdwn():
    drop = Drop(at=NOW - 5, cause="server_close", explanation="closed <!channel> & gone", connection_age_s=1)
    reply = status_reply(make_snapshot(last_drop=drop))
    assert "<!channel>" not in reply.text
    assert "&lt;!channel&gt; &amp; gone" in reply.text


def test_help_shows_mention_and_slash_examples():
    text = help_reply().text
    assert "Home tab" in text
    for example in ("@Nonstop ping", "/nonstop ping", "@Nonstop status", "/nonstop status", "/nonstop help"):
        assert example in text


def test_hint_points_to_help_and_escapes_the_echo():
    reply = hint_reply("<!here>")
    assert "help" in reply.text
    assert "<!here>" not in reply.text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("<@U0BOT0001>", "help"),
        ("<@U0BOT0001> HELP", "help"),
        ("", "help"),
        ("<@U0BOT0001> ping", "pong"),
        ("status", "status"),
        ("<@U0BOT0001> deploy api", "hint"),
    ],
)
def test_reply_for_routes_each_subcommand(text, kind):
    reply = reply_for(text, make_snapshot())
    expected = {
        "help": help_reply().text,
        "pong": pong_reply(now=NOW, rtt_ms=38.4).text,
        "status": status_reply(make_snapshot()).text,
        "hint": hint_reply("deploy").text,
    }[kind]
    assert reply.text == expected


def test_reply_thread_prefers_existing_thread():
    assert reply_thread_ts({"ts": "2.0", "thread_ts": "1.0"}) == "1.0"
    assert reply_thread_ts({"ts": "2.0"}) == "2.0"


def test_error_ref_uses_event_id_else_a_fresh_ref():
    assert error_ref({"event_id": "Ev0EMUL00001"}) == "Ev0EMUL00001"
    first, second = error_ref({"command": "/nonstop"}), error_ref({})
    assert first.startswith("ERR")
    assert first != second


def test_sorry_reply_wording():
    assert sorry_reply("Ev123").text == "Sorry, something went wrong on my side — it has been logged (ref Ev123)."


def test_status_says_what_catch_up_does_and_why_it_is_off() -> None:
    periodic = CatchUpView("periodic", last_scan_at=NOW - 30, recovered=4, scans=9)
    text = status_reply(make_snapshot(catch_up=periodic)).text
    assert "Catch-up: on · last scan 30 s ago · 4 missed mention(s) recovered" in text
    polling = CatchUpView("polling", last_scan_at=NOW - 2, recovered=1, scans=3, failed_scans=1)
    assert "no live connection" in status_reply(make_snapshot(catch_up=polling)).text
    off = CatchUpView("off", reason="no history scopes")
    assert "Catch-up: off (no history scopes)" in status_reply(make_snapshot(catch_up=off)).text
    assert "Catch-up" in json.dumps(home_view(make_snapshot(catch_up=off)))
    assert "Catch-up" not in status_reply(make_snapshot()).text, "a handler without catch-up says nothing of it"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (61, "1 min"),
        (185, "3 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (2 * 3600 + 5 * 60 + 59, "2 h 5 min"),
        (86400, "1 day"),
        (2 * 86400 + 3 * 3600 + 100, "2 days 3 h"),
    ],
)
def test_late_words(seconds, words):
    assert late_words(seconds) == words


def test_late_note_only_past_a_minute():
    assert late_note(None) is None
    assert late_note(60.0) is None
    assert late_note(60.5) == "sorry, this reached me 1 min late"
