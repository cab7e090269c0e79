from __future__ import annotations

from logging import Logger
from typing import Any

from slack_sdk import WebClient

from listeners.replies import home_view
from nonstop.status import TELEMETRY


def app_home_opened_callback(event: dict[str, Any], client: WebClient, logger: Logger) -> None:
    """Publish the Home tab with the connection's health as it is now, for the user who opened it."""
    if event.get("tab") != "home":  # the Messages tab needs nothing from us
        return
    client.views_publish(user_id=event["user"], view=home_view(TELEMETRY.snapshot()))
    logger.debug("Published the Home tab for %s", event["user"])
