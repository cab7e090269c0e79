"""Socket Mode envelopes shaped like /work/shared/socket-mode-protocol.md §8.1 and §8.2.

Ids: team T0EMUL001, app A0EMUL001, bot user U0BOT0001, human U0HUMAN01, channel C0GENERAL.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

VERIFICATION_TOKEN = "ZZZZZZWSxiZZZ2yIvs3peJ"
BOT_USER_ID = "U0BOT0001"
# {"et":"app_mention","tid":"T0EMUL001","aid":"A0EMUL001","cid":"C0GENERAL"}, opaque to apps
EVENT_CONTEXT = "4-eyJldCI6ImFwcF9tZW50aW9uIiwidGlkIjoiVDBFTVVMMDAxIiwiYWlkIjoiQTBFTVVMMDAxIiwiY2lkIjoiQzBHRU5FUkFMIn0"
_event_ids = itertools.count(1)


def slack_ts(at: float | None = None) -> str:
    """A Slack message timestamp ("seconds.micro") for `at` (default: now)."""
    return f"{time.time() if at is None else at:.6f}"


def mention_event(text: str, *, ts: str | None = None, thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    ts = ts or slack_ts()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": text,
        "user": "U0HUMAN01",
        "ts": ts,
        "team": "T0EMUL001",
        "channel": "C0GENERAL",
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """The Events API outer payload (`payload` of an `events_api` envelope), as Bolt's `body`."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": "T0EMUL001",
        "context_team_id": "T0EMUL001",
        "context_enterprise_id": None,
        "api_app_id": "A0EMUL001",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev0EMUL{next(_event_ids):05d}",
        "event_time": int(float(event["ts"])),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": "T0EMUL001",
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": EVENT_CONTEXT,
    }


def command_payload(
    text: str, *, response_url: str = "http://127.0.0.1:9/commands/T0EMUL001/1001/8f3a2c"
) -> dict[str, Any]:
    """The `payload` of a `slash_commands` envelope: every value a string."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": "T0EMUL001",
        "team_domain": "emulated",
        "channel_id": "C0GENERAL",
        "channel_name": "general",
        "user_id": "U0HUMAN01",
        "user_name": "alice",
        "command": "/nonstop",
        "text": text,
        "api_app_id": "A0EMUL001",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": "1001.2002.9f8e7d6c5b4a39281716",
    }
