"""A tiny Bolt bot for the sandbox tests: answers mentions with "pong" in the thread."""

import contextlib
import logging
from collections.abc import Iterator

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from sandbox import Sandbox


def pong_app(sb: Sandbox) -> App:
    app = App(client=WebClient(token=sb.bot_token, base_url=sb.api_url), logger=logging.getLogger("pong-bot"))

    @app.event("app_mention")
    def on_mention(event, say):
        say(text=f"pong <@{event['user']}>", thread_ts=event.get("thread_ts") or event["ts"])

    @app.command("/nonstop")
    def on_command(ack, command):
        ack(
            text="status",
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*status* {command['text']}: all good"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "1 connection"}]},
            ],
        )

    return app


@contextlib.contextmanager
def running_bot(sb: Sandbox, ping_interval: float = 1) -> Iterator[SocketModeHandler]:
    handler = SocketModeHandler(pong_app(sb), sb.app_token, ping_interval=ping_interval)
    handler.connect()
    try:
        yield handler
    finally:
        # slack_sdk 3.47.0's builtin Connection.disconnect() races its own receive thread (it can find
        # `sock` set to None between its check and its close()); that stock-client bug is not under test.
        # Raised there, close() stops before shutting down the client's session monitor and receiver, which
        # then outlive the test and keep retrying against a sandbox that is gone: closing again (the socket
        # is None now, reconnecting is already off) finishes the job.
        with contextlib.suppress(AttributeError):
            handler.close()
        handler.close()
