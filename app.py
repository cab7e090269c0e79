"""Nonstop: a Slack bot (Bolt for Python, Socket Mode) that does not go offline.

python app.py             # connect to Slack with the tokens in .env / the environment
python app.py --sandbox   # no workspace needed: a local Slack and a terminal chat
"""

from __future__ import annotations

import sys

from dotenv import load_dotenv

from listeners import register_listeners
from listeners.replies import sorry_reply
from nonstop.handler import SupervisedSocketModeHandler
from nonstop.health import start_health_server
from nonstop.logs import configure_logging
from nonstop.settings import EX_CONFIG, ConfigError, load_settings
from nonstop.startup import build_app


def main(argv: list[str]) -> int:
    if "--sandbox" in argv:
        from sandbox.demo import run_demo  # noqa: PLC0415 - only the demo needs the sandbox

        return run_demo()
    load_dotenv(override=False)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        start_health_server(settings.health_host, settings.health_port)  # before auth.test: probes see startup
        app = build_app(settings)
    except ConfigError as e:
        print(f"nonstop: configuration error: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:  # Ctrl-C while still signing in (Slack unreachable, say): nothing to drain
        print("nonstop: interrupted before connecting", file=sys.stderr)
        return 130
    register_listeners(app)
    handler = SupervisedSocketModeHandler(
        app, settings.app_token, settings=settings.supervisor, failure_reply=lambda ref: sorry_reply(ref).text
    )
    return handler.start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
