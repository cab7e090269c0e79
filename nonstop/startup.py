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

from nonstop import network
from nonstop.dispatch import background_priority
from nonstop.policy import Backoff, fatal_message, is_fatal
from nonstop.redact import redact
from nonstop.settings import ConfigError, Settings
from nonstop.webclient import CountListenerCalls, InstrumentedWebClient

log = logging.getLogger("nonstop.startup")


def check_bot_token(client: WebClient, backoff: Backoff) -> dict[str, object]:
    """Call auth.test until it gives a verdict; return its data. Raises `ConfigError` on fatal errors
    (the token, or a certificate that does not verify, or a proxy that refuses the credentials)."""
    while True:
        try:
            return dict(client.auth_test().data)  # type: ignore[arg-type]
        except SlackApiError as e:
            _raise_if_network_problem(e, client.base_url)
            data = e.response.data if isinstance(e.response.data, dict) else {}
            error = str(data.get("error") or f"HTTP {e.response.status_code}")
            if is_fatal(error):
                raise ConfigError(fatal_message(error, "bot")) from None
            detail = f"auth.test answered {error}"
        except (OSError, ValueError) as e:
            _raise_if_network_problem(e, client.base_url)
            detail = redact(f"{type(e).__name__}: {e}{network.current().through(client.base_url)}")
        delay = backoff.failure()
        log.warning("cannot reach Slack's Web API at %s (%s); retrying in %.1f s", client.base_url, detail, delay)
        time.sleep(delay)


def _raise_if_network_problem(error: BaseException, url: str) -> None:
    problem = network.current().problem(error, url)
    if problem is not None:
        raise ConfigError(fatal_message(problem.cause, "bot", problem.detail)) from None


def build_app(settings: Settings, *, rng: random.Random | None = None) -> App:
    """A Bolt App whose every Web API call goes to `settings.api_url`, and is counted in the metrics."""
    net = network.current()  # raises ConfigError for an unreadable SSL_CERT_FILE or a malformed proxy URL
    proxy = net.proxy_for(settings.api_url)
    client = InstrumentedWebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        ssl=net.ssl,
        proxy=proxy,
        retry_handlers=[network.RetryConnectionErrors()],
        logger=logging.getLogger("slack_sdk"),
    )
    client.proxy = proxy  # slack_sdk reads the proxy variables when given None: NO_PROXY's "directly" stays that
    log.info("network: %s", net.describe(settings.api_url))
    backoff = Backoff(settings.supervisor.backoff_base_s, settings.supervisor.backoff_cap_s, rng or random.Random())
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
                    initializer=background_priority,
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
        app.use(CountListenerCalls(client.telemetry))  # listeners' per-request clients are counted too
        log.info(
            "signed in as %s (bot user %s) in workspace %s via %s",
            identity.get("user", "?"),
            identity.get("user_id", "?"),
            identity.get("team", "?"),
            settings.api_url,
        )
        return app
