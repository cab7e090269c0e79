"""Build the Bolt `App` against the configured Web API, after proving the bot token works.

`auth.test` answers one of three ways: the token works; the token can never work (revoked, invalid:
a `ConfigError`, exit 78, a human must act); or Slack cannot be reached right now (retry with
backoff, forever, saying so in the log).
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from nonstop.dispatch import lower_priority
from nonstop.policy import Backoff, fatal_message, is_fatal
from nonstop.redact import redact
from nonstop.settings import ConfigError, Settings
from nonstop.webclient import CountListenerCalls, InstrumentedWebClient

log = logging.getLogger("nonstop.startup")


def check_bot_token(client: WebClient, backoff: Backoff) -> dict[str, object]:
    """Call auth.test until it gives a verdict; return its data. Raises `ConfigError` on fatal errors."""
    while True:
        try:
            return dict(client.auth_test().data)  # type: ignore[arg-type]
        except SlackApiError as e:
            data = e.response.data if isinstance(e.response.data, dict) else {}
            error = str(data.get("error") or f"HTTP {e.response.status_code}")
            if is_fatal(error):
                raise ConfigError(fatal_message(error, "bot")) from None
            detail = f"auth.test answered {error}"
        except (OSError, ValueError) as e:
            detail = redact(f"{type(e).__name__}: {e}")
        delay = backoff.failure()
        log.warning("cannot reach Slack's Web API at %s (%s); retrying in %.1f s", client.base_url, detail, delay)
        time.sleep(delay)


def build_app(settings: Settings, *, rng: random.Random | None = None) -> App:
    """A Bolt App whose every Web API call goes to `settings.api_url`, and is counted in the metrics."""
    client = InstrumentedWebClient(
        token=settings.bot_token, base_url=settings.api_url, logger=logging.getLogger("slack_sdk")
    )
    backoff = Backoff(settings.supervisor.retry_schedule, rng or random.Random())
    while True:
        identity = check_bot_token(client, backoff)
        bolt_logger = logging.getLogger("nonstop.app")
        level = bolt_logger.level
        # Bolt warns that SLACK_BOT_TOKEN in the environment is unused when a client is given: it is not.
        bolt_logger.setLevel(logging.ERROR)
        try:
            app = App(
                client=client,
                # Listeners run here; the supervisor drains this pool on a graceful stop. Few threads on
                # purpose: each runnable one competes with the ack loop for the GIL (bench/: ack p99).
                listener_executor=ThreadPoolExecutor(
                    max_workers=settings.supervisor.handler_threads,
                    thread_name_prefix="nonstop-listener",
                    initializer=lower_priority(settings.supervisor.handler_nice),
                ),
                logger=bolt_logger,
            )
        except BoltError as e:  # auth.test failed again between our check and Bolt's: try once more
            delay = backoff.failure()
            log.warning("Bolt could not start (%s); retrying in %.1f s", redact(str(e)), delay)
            time.sleep(delay)
            continue
        finally:
            bolt_logger.setLevel(level)
        app.use(CountListenerCalls(client.telemetry, client.calls))  # listeners' per-request clients too
        log.info(
            "signed in as %s (bot user %s) in workspace %s via %s",
            identity.get("user", "?"),
            identity.get("user_id", "?"),
            identity.get("team", "?"),
            settings.api_url,
        )
        return app
