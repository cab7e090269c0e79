"""`python app.py --sandbox`: the real bot, a local Slack, and a terminal chat — no workspace, no tokens.

The bot runs exactly as in production (same settings code, same `App`, same listeners, same
supervisor) in a background thread; only `SLACK_API_URL` and the tokens point at the sandbox. This
wiring lives next to `app.py` because it needs both sides: the sandbox never imports the bot.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from listeners import register_listeners
from nonstop import SupervisedSocketModeHandler
from nonstop.config.settings import load_settings
from nonstop.redact import RedactingFilter
from nonstop.startup import build_app
from sandbox.chat import Chat, ChatOutput
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES, SandboxConfig
from sandbox.server import Sandbox

# Slack's real retry schedule is 0 s / 1 min / 5 min; a demo wants to see the retries happen (and end).
DEMO_CONFIG = SandboxConfig(retry_delays_s=(0.0, 2.0, 5.0), warning_grace_s=3.0, silent_link_alive_s=10.0)


def _demo_logging(output: ChatOutput) -> None:
    """Show what the supervisor does (drops, reconnects, backoff) as short lines between chat turns."""
    handler = logging.StreamHandler(output)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("  · %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("nonstop.supervisor", "nonstop.links", "nonstop.pipeline", "nonstop.catchup"):
        logging.getLogger(name).setLevel(logging.INFO)


def _report_exit(handler: SupervisedSocketModeHandler, output: ChatOutput) -> None:
    """If the bot stops on its own (a fatal fault such as :revoke or :disable), say so in the chat."""
    if handler.wait() not in (None, 0):
        output.line(
            f"  · the bot has stopped (exit code {handler.exit_code}): a fault retrying cannot fix. "
            f":quit to leave (the demo exits with the bot's code)."
        )


def run_demo(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Run the demo until the user leaves; return the bot's exit code if it stopped by itself, else 0."""
    with Sandbox(DEMO_CONFIG) as sb:
        sb.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES])  # what manifest.yml asks for
        chat = Chat(sb, stdin=stdin, stdout=stdout)
        _demo_logging(chat.output)
        settings = load_settings(
            {
                "SLACK_BOT_TOKEN": sb.bot_token,
                "SLACK_APP_TOKEN": sb.app_token,
                "SLACK_API_URL": sb.api_url,
                "HEALTH_PORT": "0",
                "NONSTOP_LEDGER": "memory://",  # the demo's Slack lives only as long as the demo
            }
        )
        app = build_app(settings)
        register_listeners(app)
        handler = SupervisedSocketModeHandler(app, settings.app_token, settings=settings.supervisor)
        handler.connect()
        stopped_by_itself = False
        try:
            sb.wait_for_connections(settings.supervisor.connections, timeout=15)
            chat.say(
                f"Nonstop is connected to a local Slack at {sb.api_url} "
                f"with {settings.supervisor.connections} connections. Type :help for faults to try."
            )
            watcher = threading.Thread(target=_report_exit, args=(handler, chat.output), daemon=True)
            watcher.start()
            chat.run()
            stopped_by_itself = handler.wait(timeout_s=0) is not None
        finally:
            handler.close(timeout_s=settings.supervisor.drain_timeout_s + 5)
    return (handler.exit_code or 0) if stopped_by_itself else 0
