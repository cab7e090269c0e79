"""One stock Bolt bot process (tests/sandbox/bots.py's pong app under SocketModeHandler), for tests that
need several bot processes on one app: `python -m tests.sandbox.pong_process` with SANDBOX_API_URL,
SLACK_APP_TOKEN and SLACK_BOT_TOKEN in the environment. Runs until terminated."""

import os
import threading
from types import SimpleNamespace

from slack_bolt.adapter.socket_mode import SocketModeHandler

from tests.sandbox.bots import pong_app


def main() -> None:
    sb = SimpleNamespace(api_url=os.environ["SANDBOX_API_URL"], bot_token=os.environ["SLACK_BOT_TOKEN"])
    handler = SocketModeHandler(pong_app(sb), os.environ["SLACK_APP_TOKEN"], ping_interval=1)
    handler.connect()
    threading.Event().wait()


if __name__ == "__main__":
    main()
