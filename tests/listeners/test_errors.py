import logging
from unittest.mock import create_autospec
from urllib.error import URLError

import pytest
from slack_bolt import Respond, Say
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request import BoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from listeners.errors import error_callback, request_ids
from nonstop.outbound import NotDelivered
from tests.listeners.payloads import VERIFICATION_TOKEN, command_payload, event_callback, mention_event

LOGGER = logging.getLogger("test.errors")
SORRY = "Sorry, something went wrong on my side — it has been logged"


@pytest.fixture
def say() -> Say:
    return create_autospec(Say, instance=True)


@pytest.fixture
def respond() -> Respond:
    return create_autospec(Respond, instance=True)


def test_event_failure_is_logged_with_ids_and_answered_in_the_thread(say, respond, caplog):
    body = event_callback(
        mention_event("<@U0BOT0001> secret plans", thread_ts="1700000000.000100"), event_id="Ev0FAIL001"
    )

    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        error_callback(error=ValueError("boom"), body=body, logger=LOGGER, say=say, respond=respond)

    say.assert_called_once()
    assert say.call_args.kwargs == {"text": f"{SORRY} (ref Ev0FAIL001).", "thread_ts": "1700000000.000100"}
    respond.assert_not_called()
    [record] = caplog.records
    message = record.getMessage()
    assert "Ev0FAIL001" in message
    assert "event.channel=C0GENERAL" in message
    assert record.exc_info is not None
    assert VERIFICATION_TOKEN not in caplog.text
    assert "secret plans" not in caplog.text  # ids only, never the payload


def test_command_failure_is_answered_ephemerally_via_respond(say, respond, caplog):
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        error_callback(error=KeyError("x"), body=command_payload("status"), logger=LOGGER, say=say, respond=respond)

    respond.assert_called_once()
    kwargs = respond.call_args.kwargs
    assert kwargs["response_type"] == "ephemeral"
    assert kwargs["text"].startswith(SORRY)
    ref = kwargs["text"].rsplit("ref ", 1)[1].rstrip(").")
    assert ref in caplog.text
    assert "trigger_id" not in caplog.text
    assert VERIFICATION_TOKEN not in caplog.text
    say.assert_not_called()


def test_error_handler_never_raises_when_telling_the_user_fails(say, respond, caplog):
    say.side_effect = SlackApiError("channel_not_found", response={"ok": False, "error": "channel_not_found"})
    body = event_callback(mention_event("<@U0BOT0001> ping"))

    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        error_callback(error=ValueError("boom"), body=body, logger=LOGGER, say=say, respond=respond)

    assert "Could not tell the user" in caplog.text


def test_error_handler_survives_a_broken_logger(say, respond):
    broken = create_autospec(logging.Logger, instance=True)
    broken.error.side_effect = OSError("disk full")
    broken.exception.side_effect = OSError("disk full")

    error_callback(error=ValueError("boom"), body=command_payload("ping"), logger=broken, say=say, respond=respond)

    broken.error.assert_called_once()  # it did try to log, and that failed
    respond.assert_called_once()  # the user is still told, politely
    assert respond.call_args.kwargs["text"].startswith(SORRY)


def test_failures_on_bot_events_are_logged_but_not_answered(say, respond, caplog):
    body = event_callback(mention_event("<@U0BOT0001> ping", bot_id="B0OTHER01"))

    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        error_callback(error=ValueError("boom"), body=body, logger=LOGGER, say=say, respond=respond)

    say.assert_not_called()
    assert body["event_id"] in caplog.text


def test_unhandled_requests_are_not_reported_to_users(say, respond, caplog):
    body = event_callback(mention_event("<@U0BOT0001> ping"))
    error = BoltUnhandledRequestError(request=BoltRequest(body=body, mode="socket_mode"), current_response=None)

    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        error_callback(error=error, body=body, logger=LOGGER, say=say, respond=respond)

    say.assert_not_called()
    respond.assert_not_called()
    assert not caplog.records


def test_request_ids_keep_ids_and_drop_content():
    ids = request_ids(event_callback(mention_event("<@U0BOT0001> hi"), event_id="Ev9"))
    assert ids["event_id"] == "Ev9"
    assert ids["event.type"] == "app_mention"
    assert "token" not in ids
    assert all("hi" not in value for value in ids.values())


@pytest.mark.parametrize(
    "error",
    [
        SlackApiError(
            "ratelimited",
            SlackResponse(
                client=None,
                http_verb="POST",
                api_url="x",
                req_args={},
                data={"ok": False, "error": "ratelimited"},
                headers={"Retry-After": "1"},
                status_code=429,
            ),
        ),
        SlackApiError(
            "503",
            SlackResponse(
                client=None,
                http_verb="POST",
                api_url="x",
                req_args={},
                data={"ok": False, "error": "service_unavailable"},
                headers={},
                status_code=503,
            ),
        ),
        URLError(ConnectionRefusedError(111, "refused")),
        TimeoutError("read timed out"),
        NotDelivered("chat.postMessage", "deadline", "NONSTOP_REPLY_DEADLINE passed"),
    ],
)
def test_no_apology_when_slack_was_busy_down_or_slow(error, say, respond, caplog):
    body = event_callback(mention_event("<@U0BOT0001> ping"), event_id="Ev0BUSY001")

    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        error_callback(error=error, body=body, logger=LOGGER, say=say, respond=respond)

    say.assert_not_called()
    respond.assert_not_called()
    assert "Ev0BUSY001" in caplog.text, "still logged with its ids"
    assert "No apology" in caplog.text


def test_a_refusal_slack_gives_for_good_is_the_listener_s_failure_and_gets_an_apology(say, respond):
    error = SlackApiError("msg_too_long", SlackResponse(client=None, http_verb="POST", api_url="x", req_args={},
                          data={"ok": False, "error": "msg_too_long"}, headers={}, status_code=200))  # fmt: skip
    body = event_callback(mention_event("<@U0BOT0001> ping"))

    error_callback(error=error, body=body, logger=LOGGER, say=say, respond=respond)

    say.assert_called_once()
