"""The stock bot: the same App and listeners as Nonstop, run by Bolt's `SocketModeHandler` with its defaults.

    SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… SLACK_API_URL=http://127.0.0.1:PORT/api/ python bench/stock_bot.py

This is the baseline of the benchmark (`bench/run.py`): nothing here is tuned. With `--dropin`, the same App on
Nonstop's `SupervisedSocketModeHandler` instead, as a user of the drop-in would run it (`bench/aio_answers.py --app`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from slack_bolt import App  # noqa: E402
from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from listeners import register_listeners  # noqa: E402


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    api_url = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
    app = App(client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url))
    register_listeners(app)
    if "--dropin" in sys.argv[1:]:
        from nonstop import SupervisedSocketModeHandler  # only the drop-in's runs import Nonstop

        sys.exit(SupervisedSocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start())
    SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start()


if __name__ == "__main__":
    main()
