"""The global error handler: a failing listener is logged and the user gets a polite answer.

The apology is honest: it goes out only when the listener itself failed (a bug), never because Slack was
busy, down or slow (`nonstop.outbound.slack_trouble`): that is not the listener's fault, the answer path
already retries it, and an apology would meet the same trouble. It goes through the governor like any
answer (`say` is the request's governed client).

Nothing here may raise: Bolt calls it from its listener thread, and an exception escaping it would
only produce a second, less useful traceback.
"""

from __future__ import annotations

import contextlib
from logging import Logger
from typing import Any

from slack_bolt import App, Respond, Say
from slack_bolt.error import BoltUnhandledRequestError

from listeners.events.app_mention import is_from_bot
from listeners.replies import error_ref, reply_thread_ts, sorry_reply
from nonstop.outbound import slack_trouble

# Ids that locate a request without exposing its content or any credential.
_ID_KEYS = ("event_id", "team_id", "api_app_id", "channel_id", "user_id", "command")
_EVENT_ID_KEYS = ("type", "channel", "user", "ts", "thread_ts")


def request_ids(body: dict[str, Any]) -> dict[str, str]:
    """The identifying ids of a request body, never its text or its verification token."""
    ids = {key: str(body[key]) for key in _ID_KEYS if body.get(key)}
    event = body.get("event")
    if isinstance(event, dict):
        ids.update({f"event.{key}": str(event[key]) for key in _EVENT_ID_KEYS if event.get(key)})
    return ids


def log_failure(logger: Logger, error: BaseException, body: dict[str, Any]) -> str:
    """Log a failed request with its ids and the traceback; return the ref to show the user. Never
    raises: a broken logger must not cost the user their answer."""
    ref = error_ref(body)
    with contextlib.suppress(Exception):
        ids = " ".join(f"{key}={value}" for key, value in request_ids(body).items())
        logger.error("Listener failed (ref %s) %s: %r", ref, ids, error, exc_info=error)
    return ref


def error_callback(
    error: Exception,
    body: dict[str, Any],
    logger: Logger,
    say: Say | None,
    respond: Respond | None,
) -> None:
    if isinstance(error, BoltUnhandledRequestError):
        with contextlib.suppress(Exception):
            logger.debug("No listener for this request; nothing to tell anyone")
        return
    ref = log_failure(logger, error, body)
    if slack_trouble(error):
        with contextlib.suppress(Exception):
            logger.warning("No apology for ref %s: Slack's trouble, not the listener's (%s)", ref, type(error).__name__)
        return
    try:
        reply = sorry_reply(ref)
        event = body.get("event")
        if isinstance(event, dict):
            if say is not None and event.get("channel") and not is_from_bot(event):
                say(text=reply.text, thread_ts=reply_thread_ts(event))
        elif respond is not None:
            respond(text=reply.text, response_type="ephemeral")
    except Exception:  # the error handler must never raise
        with contextlib.suppress(Exception):  # not even a broken logger may escape
            logger.exception("Could not tell the user about a failed listener")


def register(app: App) -> None:
    app.error(error_callback)
