import logging
import re
import time
from unittest.mock import create_autospec

import pytest
from slack_bolt import Say

from listeners.events.app_mention import app_mention_callback, is_from_bot
from nonstop.status import Drop, Telemetry
from nonstop.status.state import State
from tests.listeners.payloads import mention_event, slack_ts

LOGGER = logging.getLogger("test.app_mention")


@pytest.fixture
def telemetry(monkeypatch) -> Telemetry:
    fresh = Telemetry()
    monkeypatch.setattr("listeners.events.app_mention.TELEMETRY", fresh)
    return fresh


@pytest.fixture
def say() -> Say:
    return create_autospec(Say, instance=True)


def sent(say) -> dict:
    say.assert_called_once()
    kwargs = say.call_args.kwargs
    assert kwargs["text"], "every reply carries a plain-text fallback"
    return kwargs


def test_ping_answers_pong_in_the_mention_thread_with_delay(telemetry, say):
    telemetry.rtt(42.0)
    event = mention_event("<@U0BOT0001> ping", ts=slack_ts(time.time() - 0.5))

    app_mention_callback(event=event, say=say, logger=LOGGER)

    reply = sent(say)
    assert reply["thread_ts"] == event["ts"]
    assert "pong" in reply["text"]
    delay = int(re.search(r"in (\d+) ms", reply["text"]).group(1))
    assert 500 <= delay < 10_000
    assert "42 ms" in reply["text"]


def test_reply_goes_to_the_existing_thread(telemetry, say):
    event = mention_event("<@U0BOT0001> ping", thread_ts="1700000000.000100")

    app_mention_callback(event=event, say=say, logger=LOGGER)

    assert sent(say)["thread_ts"] == "1700000000.000100"


def test_mention_ts_in_the_future_counts_as_zero_delay(telemetry, say):
    app_mention_callback(
        event=mention_event("<@U0BOT0001> ping", ts=slack_ts(time.time() + 60)), say=say, logger=LOGGER
    )

    assert "in 0 ms" in sent(say)["text"]


def test_status_reads_the_live_telemetry(telemetry, say):
    telemetry.connection_up()
    telemetry.connection_down(
        Drop(at=time.time(), cause="half_open", explanation="no pong for 30 s", connection_age_s=9)
    )
    telemetry.handled()
    telemetry.set_state(State.DEGRADED, "1 of 2 connections")

    app_mention_callback(event=mention_event("<@U0BOT0001|nonstop> Status"), say=say, logger=LOGGER)

    reply = sent(say)
    assert "no pong for 30 s" in reply["text"]
    assert "degraded" in reply["text"]
    assert "0 of 1" in reply["text"]
    assert any(block["type"] == "context" for block in reply["blocks"])


@pytest.mark.parametrize("text", ["<@U0BOT0001>", "<@U0BOT0001> help", "<@U0BOT0001>  HELP "])
def test_help_and_empty_mention_explain_what_it_can_do(telemetry, say, text):
    app_mention_callback(event=mention_event(text), say=say, logger=LOGGER)

    reply = sent(say)
    assert "@Nonstop ping" in reply["text"]
    assert "/nonstop status" in reply["text"]


def test_unknown_request_gets_a_friendly_hint(telemetry, say):
    app_mention_callback(event=mention_event("<@U0BOT0001> deploy api"), say=say, logger=LOGGER)

    reply = sent(say)
    assert "`help`" in reply["text"]
    assert "deploy" in reply["text"]


@pytest.mark.parametrize(
    "extra",
    [{"bot_id": "B0EMUL001"}, {"bot_id": "B0OTHER01"}, {"subtype": "bot_message"}],
)
def test_bots_never_get_an_answer(telemetry, say, extra):
    event = mention_event("<@U0BOT0001> ping", **extra)

    assert is_from_bot(event)
    app_mention_callback(event=event, say=say, logger=LOGGER)

    say.assert_not_called()


def test_humans_are_not_bots():
    assert not is_from_bot(mention_event("<@U0BOT0001> ping"))


def test_a_mention_answered_more_than_a_minute_late_says_sorry(telemetry, say):
    """Catch-up answers a mention Slack never delivered: the answer owns up to the delay (issue 18)."""
    event = mention_event("<@U0BOT0001> ping", ts=slack_ts(time.time() - 185))

    app_mention_callback(event=event, say=say, logger=LOGGER, context={"nonstop_late_s": 185.0})

    text = sent(say)["text"]
    assert text.startswith("pong — sorry, this reached me 3 min late")
    assert " ms" not in text.split("·")[0], "no count of milliseconds beside the apology"


def test_a_late_status_or_help_says_sorry_first_in_text_and_blocks(telemetry, say):
    app_mention_callback(
        event=mention_event("<@U0BOT0001> help"), say=say, logger=LOGGER, context={"nonstop_late_s": 2 * 3600 + 300}
    )

    reply = sent(say)
    assert reply["text"].startswith("Sorry, this reached me 2 h 5 min late. ")
    assert reply["blocks"][0] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "Sorry, this reached me 2 h 5 min late."}],
    }


@pytest.mark.parametrize("context", [None, {}, {"nonstop_late_s": None}, {"nonstop_late_s": 60.0}])
def test_a_mention_on_time_or_of_unknown_lateness_does_not_apologise(telemetry, say, context):
    app_mention_callback(event=mention_event("<@U0BOT0001> ping"), say=say, logger=LOGGER, context=context)

    text = sent(say)["text"]
    assert "sorry" not in text.lower()
    assert re.search(r"reached me in \d+ ms", text)
