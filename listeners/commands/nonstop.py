from __future__ import annotations

from logging import Logger
from typing import Any

from slack_bolt import Ack

from listeners.errors import log_failure
from listeners.replies import Reply, reply_for, sorry_reply
from nonstop.status import TELEMETRY


def nonstop_command_callback(ack: Ack, command: dict[str, Any], logger: Logger) -> None:
    """Answer `/nonstop …` inside the ack itself: ephemeral, on time, no network I/O first."""
    reply: Reply
    try:
        reply = reply_for(command.get("text"), TELEMETRY.snapshot())
    except Exception as error:
        # The ack is the user's only chance of an answer within 3 s: give it even when we fail.
        reply = sorry_reply(log_failure(logger, error, command))
    ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
