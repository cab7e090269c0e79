"""An `AsyncApp` bot for the async rows of the benchmark (`bench/aio_eval.py`): the same app on Bolt's stock
`AsyncSocketModeHandler` (aiohttp) or on Nonstop's `AsyncSupervisedSocketModeHandler`, each with its defaults.

    SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… SLACK_API_URL=http://127.0.0.1:PORT/api/ \\
        python bench/async_bot.py stock|nonstop

A mention is answered in its thread (one `chat.postMessage`), `/nonstop` in its ack: what the sync bots do,
without this bot's status texts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from slack_bolt.async_app import AsyncApp  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402


def make_app() -> AsyncApp:
    api_url = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
    app = AsyncApp(client=AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url))

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        await say(text="pong", thread_ts=event.get("thread_ts") or event["ts"])

    @app.command("/nonstop")
    async def command(ack: Any) -> None:
        await ack(text="pong", response_type="ephemeral")

    return app


async def main(which: str) -> int:
    app = make_app()
    token = os.environ["SLACK_APP_TOKEN"]
    if which == "stock":
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        await AsyncSocketModeHandler(app, token).start_async()
        return 0
    from nonstop import AsyncSupervisedSocketModeHandler

    return await AsyncSupervisedSocketModeHandler(app, token).start_async()


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if len(sys.argv) != 2 or sys.argv[1] not in ("stock", "nonstop"):
        sys.exit("usage: python bench/async_bot.py stock|nonstop")
    sys.exit(asyncio.run(main(sys.argv[1])))
