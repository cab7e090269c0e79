"""LOG_FORMAT=json: one parseable object per line, with the supervisor's fields, and never a token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.logs import configure_logging

BOT = "xoxb-" + "1000000001-2000000001-abcdefghijklmnop"  # split: a fake, not for secret scanners
APP = "xapp-1-A0APP-3000000001-abcdefghijklmnopqrstuvwx"


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict]]]:
    """configure_logging(json) as app.py does it, its stream swapped for a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json")
    (handler,) = root.handlers
    buffer = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    try:
        yield lines
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_json_lines_carry_the_extra_fields(json_logs):
    log = logging.getLogger("nonstop.supervisor")
    log.warning(
        "%s dropped after %s: %s",
        "connection #1",
        "2.0 s",
        "1006 abnormal closure",
        extra={"connection": "connection #1", "cause": "reset", "close_code": 1006, "retry_in_s": 0.0},
    )
    logging.getLogger("nonstop.pipeline.dispatch").info(
        "suppressed a duplicate delivery of %s",
        "Ev01",
        extra={"envelope_id": "env-1", "event_id": "Ev01", "retry_attempt": 1},
    )
    first, second = json_logs()
    assert first["level"] == "WARNING"
    assert first["logger"] == "nonstop.supervisor"
    assert first["message"] == "connection #1 dropped after 2.0 s: 1006 abnormal closure"
    assert (first["connection"], first["cause"], first["close_code"]) == ("connection #1", "reset", 1006)
    assert first["timestamp"].endswith("+00:00")
    assert (second["envelope_id"], second["event_id"], second["retry_attempt"]) == ("env-1", "Ev01", 1)


def test_tokens_are_redacted_in_messages_arguments_and_fields(json_logs):
    log = logging.getLogger("nonstop.test")
    log.warning("token %s in an argument; ticket wss://x/link/?ticket=abc123&app_id=A1", BOT)
    log.warning(f"token {APP} in the message itself")
    log.warning(
        "token in extra= fields",
        extra={"url": "wss://x/link/?ticket=abc123&app_id=A1", "header": f"Bearer {BOT}", "detail": ValueError(APP)},
    )
    (first, second, third) = json_logs()
    text = json.dumps([first, second, third])
    assert BOT not in text
    assert APP not in text
    assert "abcdefghijklmnop" not in text
    assert "abc123" not in text
    assert "xoxb-…redacted" in first["message"]
    assert "xapp-…redacted" in second["message"]
    assert third["url"] == "wss://x/link/?ticket=…redacted&app_id=A1"
    assert third["header"] == "Bearer xoxb-…redacted"
    assert third["detail"] == "xapp-…redacted"


def test_text_logs_redact_extra_fields_that_a_formatter_prints():
    from nonstop.redact import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(message)s conn=%(connection)s"))
    log = logging.getLogger("nonstop.test.text")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("dropped", extra={"connection": f"{BOT}"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue() == "dropped conn=xoxb-…redacted\n"


def test_slack_sdk_exception_text_is_redacted(json_logs):
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/apps.connections.open",
        req_args={"headers": {"Authorization": f"Bearer {APP}"}},
        data={"ok": False, "error": "invalid_auth", "echo": BOT},
        headers={},
        status_code=200,
    )
    try:
        raise SlackApiError(f"The request failed for {APP}", response)
    except SlackApiError:
        logging.getLogger("nonstop.startup").exception("auth.test failed")
    (line,) = json_logs()
    assert "SlackApiError" in line["exception"]
    assert "invalid_auth" in line["exception"]
    assert APP not in json.dumps(line)
    assert BOT not in json.dumps(line)
    assert "xapp-…redacted" in line["exception"]
