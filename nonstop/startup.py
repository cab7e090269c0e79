"""Build the Bolt `App` against the configured Web API, after proving the bot token works.

`auth.test` answers one of three ways: the token works; the token can never work (revoked, invalid:
a `ConfigError`, exit 78, a human must act); or Slack cannot be reached right now (retry with
backoff, forever, saying so in the log).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from nonstop.config.settings import DEFAULT_API_URL, Settings
from nonstop.errors import ConfigError
from nonstop.net import network
from nonstop.net.retry import Backoff, fatal_message, is_fatal
from nonstop.outbound import AnswerThroughGovernor, GovernedWebClient, Outbound
from nonstop.redact import redact
from nonstop.status.telemetry import TELEMETRY

log = logging.getLogger("nonstop.startup")


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """slack_sdk logs every failed try and its own retry; at start-up our one line per attempt says it all."""
    if log.isEnabledFor(logging.DEBUG):  # debugging start-up: show everything
        yield
        return
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _unreachable_hint(base_url: str) -> str:
    if base_url == DEFAULT_API_URL:
        return "is this machine online, or does it need a proxy?"
    return f"check SLACK_API_URL (the default is {DEFAULT_API_URL})"


def check_bot_token(client: WebClient, backoff: Backoff) -> dict[str, object]:
    """Call auth.test until it gives a verdict; return its data. Raises `ConfigError` on fatal errors
    and when SLACK_API_URL answers like no Web API (404 / not_found: retrying cannot fix a wrong URL), or a
    certificate does not verify, or a proxy refuses the credentials."""
    while True:
        try:
            with _quiet(client.logger):
                return dict(client.auth_test().data)  # type: ignore[arg-type]
        except SlackApiError as e:
            _raise_if_network_problem(e, client.base_url)
            data = e.response.data if isinstance(e.response.data, dict) else {}
            error = str(data.get("error") or f"HTTP {e.response.status_code}")
            if is_fatal(error):
                raise ConfigError(fatal_message(error, "bot")) from None
            if e.response.status_code == 404 or error == "not_found":
                raise ConfigError(
                    f"SLACK_API_URL={client.base_url} answered auth.test with {error} (HTTP "
                    f"{e.response.status_code}): it is not Slack's Web API; expected its base URL, "
                    f"ending in /api/, e.g. {DEFAULT_API_URL}"
                ) from None
            detail = f"auth.test answered {error}"
        except (OSError, ValueError) as e:
            _raise_if_network_problem(e, client.base_url)
            detail = redact(f"{type(e).__name__}: {e}{network.current().through(client.base_url)}")
        delay = backoff.failure()
        log.warning(
            "cannot reach Slack's Web API at %s (%s); retrying in %.1f s; %s",
            client.base_url,
            detail,
            delay,
            _unreachable_hint(client.base_url),
        )
        time.sleep(delay)


def _raise_if_network_problem(error: BaseException, url: str) -> None:
    problem = network.current().problem(error, url)
    if problem is not None:
        raise ConfigError(fatal_message(problem.cause, "bot", problem.detail)) from None


def build_outbound(settings: Settings) -> Outbound:
    """The process's way out (`Outbound.for_ledger`), with the supervisor's retry schedule, counted in the bot's
    metrics; on a Redis ledger (replicas) its buckets are shared through that Redis."""
    outbound = Outbound.for_ledger(
        settings.outbound,
        ledger_url=settings.supervisor.ledger_url,
        schedule=settings.supervisor.retry_schedule,
        registry=TELEMETRY.metrics.registry,
    )
    outbound.start()  # here, not on a listener's thread: the senders keep this thread's priority (nonstop.lanes)
    return outbound


def build_app(settings: Settings, *, rng: random.Random | None = None, outbound: Outbound | None = None) -> App:
    """A Bolt App whose every Web API call goes to `settings.api_url` through the governor (`outbound`, or
    one built from `settings`), and is counted in the metrics."""
    net = network.current()  # raises ConfigError for an unreadable SSL_CERT_FILE or a malformed proxy URL
    proxy = net.proxy_for(settings.api_url)
    outbound = outbound or build_outbound(settings)
    client = GovernedWebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        ssl=net.ssl,
        proxy=proxy,
        retry_handlers=[network.RetryConnectionErrors()],
        logger=logging.getLogger("slack_sdk"),
        outbound=outbound,
    )
    client.proxy = proxy  # slack_sdk reads the proxy variables when given None: NO_PROXY's "directly" stays that
    log.info("network: %s", net.describe(settings.api_url))
    backoff = Backoff(settings.supervisor.retry_schedule, rng or random.Random())
    while True:
        identity = check_bot_token(client, backoff)
        bolt_logger = logging.getLogger("nonstop.app")
        level = bolt_logger.level
        # Bolt warns that SLACK_BOT_TOKEN in the environment is unused when a client is given: it is not.
        bolt_logger.setLevel(logging.ERROR)
        try:
            # Listeners run in the supervisor's lanes (nonstop.bolt.lanes), which it installs as Bolt's executor.
            app = App(client=client, logger=bolt_logger)
        except BoltError as e:  # auth.test failed again between our check and Bolt's: try once more
            delay = backoff.failure()
            log.warning("Bolt could not start (%s); retrying in %.1f s", redact(str(e)), delay)
            time.sleep(delay)
            continue
        finally:
            bolt_logger.setLevel(level)
        app.use(AnswerThroughGovernor(outbound, client.telemetry, client.calls))  # listeners' per-request clients
        log.info(
            "signed in as %s (bot user %s) in workspace %s via %s",
            identity.get("user", "?"),
            identity.get("user_id", "?"),
            identity.get("team", "?"),
            settings.api_url,
        )
        return app
