from __future__ import annotations

import time
from logging import Logger
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from listeners.replies import ConnectionCheck, event_delay_ms, home_view
from nonstop.status import TELEMETRY


def check_web_api(client: WebClient) -> tuple[float | None, str | None]:
    """One auth.test round trip: (milliseconds, None), or (None, why it failed)."""
    started = time.monotonic()
    try:
        client.auth_test()
    except SlackApiError as e:
        return None, str(e.response.get("error") or f"HTTP {e.response.status_code}")
    except OSError as e:
        return None, type(e).__name__
    return (time.monotonic() - started) * 1000.0, None


def check_connection_callback(ack: Ack, body: dict[str, Any], client: WebClient, logger: Logger) -> None:
    """The Home tab's "Check connection": ack at once (Slack's 3 s deadline), measure, publish the result."""
    ack()
    now = time.time()
    action = (body.get("actions") or [{}])[0]
    web_api_ms, error = check_web_api(client)
    snapshot = TELEMETRY.snapshot()
    check = ConnectionCheck(
        at=now,
        web_api_ms=web_api_ms,
        error=error,
        rtt_ms=snapshot.last_rtt_ms,
        click_delay_ms=event_delay_ms(action.get("action_ts"), now),
    )
    user = body["user"]["id"]
    client.views_publish(user_id=user, view=home_view(snapshot, check))
    logger.debug("Checked the connection for %s: %s", user, error or f"{web_api_ms:.0f} ms")
