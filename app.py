"""Nonstop: a Slack bot (Bolt for Python, Socket Mode) that does not go offline.

python app.py             # connect to Slack with the tokens in .env / the environment
python app.py --sandbox   # no workspace needed: a local Slack and a terminal chat
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from dotenv import load_dotenv

from listeners import register_listeners
from listeners.replies import sorry_reply
from nonstop import SupervisedSocketModeHandler
from nonstop.config.settings import load_settings, warn_once
from nonstop.errors import EX_CONFIG, ConfigError
from nonstop.logs import configure_logging
from nonstop.startup import build_app
from nonstop.status import TELEMETRY
from nonstop.status.health import process_health_server


class StoppedWhileSigningIn(BaseException):
    """SIGTERM/SIGINT before the supervisor owns the signals: nothing is in flight, so leave cleanly.

    A BaseException, so that no `except Exception` on the way (slack_sdk's retries) swallows it."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.name = signal.Signals(sig).name


def _stop_signing_in(sig: int, _frame: FrameType | None) -> None:
    raise StoppedWhileSigningIn(sig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Nonstop: a Slack bot (Bolt for Python, Socket Mode) that does not go offline.",
        epilog="Settings come from the environment and .env: see docs/configuration.md.",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run the real bot against a local Slack with a terminal chat (no workspace, no tokens)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)  # --help exits 0, an unknown flag exits 2, both with the usage
    if args.sandbox:
        from demo import run_demo  # noqa: PLC0415 - only the demo needs the sandbox

        return run_demo()
    load_dotenv(override=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_signing_in)  # until the supervisor's loop installs its own handlers
    try:
        settings = load_settings()  # the tokens and the Web API: what signing in needs
        configure_logging(settings.log_level, settings.log_format)
        warn_once(settings.warnings)  # now, before signing in; the handler says them once, not twice
        TELEMETRY.target_connections = settings.supervisor.connections  # probes see the real target at once
        TELEMETRY.stale_after_s = settings.supervisor.stale_after_s
        process_health_server(settings.health_host, settings.health_port)  # before auth.test: probes see startup
        app = build_app(settings)
        register_listeners(app)
        # The rest is what any Bolt app gets from the handler: NONSTOP_* (and their warnings), the durable
        # ledger, the health server (already running), signals, the exit code.
        handler = SupervisedSocketModeHandler(app, settings.app_token, failure_reply=lambda ref: sorry_reply(ref).text)
        return handler.start()
    except ConfigError as e:
        print(f"nonstop: configuration error: {e}", file=sys.stderr)
        return EX_CONFIG
    except StoppedWhileSigningIn as e:
        print(f"nonstop: {e.name} while signing in to Slack; stopped (nothing was connected yet)", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
