from __future__ import annotations

import io
import logging

from nonstop.redact import RedactingFilter, redact

# Realistic shapes, split so that secret scanners do not mistake the fakes for leaked tokens.
BOT = "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOp"
APP = "xapp-1-" + "A0EMUL001-1234567890-deadbeefcafe"


def test_tokens_and_tickets_are_masked_everywhere_in_a_string() -> None:
    text = redact(f"token={BOT} and Bearer {APP} url=ws://h/link/?ticket=abc-123&app_id=A1")
    assert BOT not in text
    assert APP not in text
    assert "abc-123" not in text
    assert "xoxb-…redacted" in text
    assert "app_id=A1" in text


def test_filter_redacts_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s", BOT)
        try:
            raise RuntimeError(f"slack_sdk said: invalid token {APP}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert BOT not in out
    assert APP not in out
    assert "RuntimeError" in out
