from __future__ import annotations

from logging import Logger
from typing import Any

from slack_bolt import Say

from listeners.replies import reply_for, reply_thread_ts
from nonstop.status import TELEMETRY


def is_from_bot(event: dict[str, Any]) -> bool:
    """Bots (ourselves included) never get an answer: that is how reply loops start."""
    return bool(event.get("bot_id")) or event.get("subtype") == "bot_message"


def app_mention_callback(
    event: dict[str, Any], say: Say, logger: Logger, context: dict[str, Any] | None = None
) -> None:
    if is_from_bot(event):
        logger.debug("Ignoring a mention from bot %s", event.get("bot_id"))
        return
    late_s = (context or {}).get("nonstop_late_s")  # docs/dropin.md: set by Nonstop's runners for every event
    reply = reply_for(event.get("text"), TELEMETRY.snapshot(), event_ts=event.get("ts"), late_s=late_s)
    say(text=reply.text, blocks=reply.blocks, thread_ts=reply_thread_ts(event))
