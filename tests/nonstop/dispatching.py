"""For tests that drive `nonstop.pipeline.dispatch.Dispatcher` directly: an Events API envelope and an async wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def mention_envelope(
    envelope_id: str, event_id: str, *, retry_attempt: int = 0, ts: str = "1700000000.000100"
) -> dict[str, Any]:
    """An `app_mention` as Slack sends it over Socket Mode."""
    event = {"type": "app_mention", "text": "<@U0BOT0001> ping", "user": "U0HUMAN01", "channel": "C0GENERAL",
             "ts": ts, "event_ts": ts}  # fmt: skip
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "retry_attempt": retry_attempt,
        "payload": {"type": "event_callback", "event_id": event_id, "team_id": "T0EMUL001", "event": event},
    }


async def until(check: Callable[[], bool], timeout_s: float = 15) -> None:
    """Wait on the running loop until `check()` holds, or fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)
