"""What both drop-in handlers decide the same way: their settings, their ledger, their health server, and the
supervisor of each run.

The same defaults as `python app.py`, from the same environment, with one difference on purpose:

- Settings: `NONSTOP_*` (a misspelled name gets one warning, as for the bot), unless `settings=` is given; the
  stock keywords (`ping_interval`, `concurrency`) win over either.
- The ledger: `ledger=`, else `NONSTOP_LEDGER`, else it depends on who owns the process. `start()` /
  `start_async()` own it: a durable SQLite file in the working directory (or systemd's `STATE_DIRECTORY`), as
  `python app.py` keeps. `connect()` / `connect_async()` are embedded in a program of someone else's (several
  workers in one directory, tests running handler after handler with the same event ids): a file shared by
  all of them would take one's events for another's duplicates, so the default there is in memory, one per
  handler, kept across `disconnect()` and `connect()`.
- The health server (`/healthz`, `/readyz`, `/metrics` on HEALTH_HOST:HEALTH_PORT, default 127.0.0.1:8080):
  with `start()`, and with `connect()` only when HEALTH_PORT is set; one per process, whoever starts it first.
- Process-wide tuning (`APP_PROCESS_TUNING`): with `start()` only, restored when it returns.
- The answer path's settings (`NONSTOP_REPLY_DEADLINE`, `NONSTOP_UNSURE_ANSWER`), unless `settings=` is given:
  both handlers govern their app's listeners' calls with them (an `App` built with a governor of its own,
  as `python app.py` builds its in `nonstop.startup.build_app`, keeps that one and its settings).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from nonstop.config.settings import (
    OutboundSettings,
    SupervisorSettings,
    handler_settings,
    health_address,
    outbound_settings,
    warn_once,
)
from nonstop.errors import ConfigError
from nonstop.handlers.options import StockOptions
from nonstop.ledger import Ledger
from nonstop.ledger.memory import MemoryLedger
from nonstop.links.holding import LinkHooks
from nonstop.links.tickets import ticket_client
from nonstop.pipeline.driver import Runner
from nonstop.status import Telemetry
from nonstop.status.health import process_health_server
from nonstop.supervisor import Supervisor

__all__ = ["Setup", "app_token_from"]

log = logging.getLogger("nonstop.handlers")


def app_token_from(app_token: str | None) -> str:
    """The token given, else SLACK_APP_TOKEN. Raises `ConfigError` (one line) when neither is there."""
    token = app_token or os.environ.get("SLACK_APP_TOKEN", "").strip()
    if not token:
        raise ConfigError(
            "no app-level token: pass app_token=, or set SLACK_APP_TOKEN to an app-level token with the "
            "connections:write scope (api.slack.com/apps → your app → Basic Information → App-Level Tokens)"
        )
    return token


class Setup:
    """Args:
    app_token: the app-level token.
    options: the stock keywords, checked.
    settings: explicit settings (then the environment's `NONSTOP_*` are not read).
    ledger: an explicit ledger.
    telemetry: the health record.
    bot_client: the bot's own client: catch-up's calls go through it (when it is governed), and it is watched for
        a dead bot token when it reports its calls. A handler may replace it (`bot_client`) before a run.

    Raises `ConfigError` when the environment's settings are wrong (one line each).
    """

    def __init__(
        self,
        app_token: str,
        options: StockOptions,
        *,
        settings: SupervisorSettings | None,
        ledger: Ledger | None,
        telemetry: Telemetry,
        bot_client: object,
    ) -> None:
        self.app_token = app_token
        self.options = options
        self._explicit = settings
        self._ledger = ledger
        self._telemetry = telemetry
        self.bot_client = bot_client
        self._memory: MemoryLedger | None = None
        if settings is None:
            _, warnings = handler_settings(own_process=False)  # bad values fail here, before any network call
            warn_once(warnings)
        self.settings = self.settings_for(own_process=False)
        # The answer path's: the environment's, unless explicit settings were given (then its defaults).
        self.answers = OutboundSettings() if settings is not None else outbound_settings()

    def settings_for(self, *, own_process: bool) -> SupervisorSettings:
        """The run's settings: explicit or the environment's, with the stock keywords on top."""
        settings = self._explicit or handler_settings(own_process=own_process)[0]
        return self.options.apply(settings)

    def health(self, *, own_process: bool) -> None:
        """Start the process's health server if this run calls for one (see the module's docstring). Raises
        `ConfigError` when HEALTH_PORT names a port that cannot be used; the default one (8080) taken by something
        else is said in the log instead: the app ran before without a health server, and still can."""
        chosen = bool(os.environ.get("HEALTH_PORT", "").strip())
        if not (own_process or chosen):
            return
        try:
            process_health_server(*health_address(), self._telemetry)
        except ConfigError as e:
            if chosen:
                raise
            log.warning("no health server: %s", e)

    def supervisor(
        self, *, own_process: bool, runner: Callable[[SupervisorSettings], Runner], hooks: LinkHooks
    ) -> Supervisor:
        """The supervisor of one run. `runner(settings)` makes the runner of the app's listeners."""
        settings = self.settings = self.settings_for(own_process=own_process)
        hooks.websocket_options = self.options.websocket_options()
        return Supervisor(
            self.app_token,
            settings=settings,
            telemetry=self._telemetry,
            runner=lambda: runner(settings),
            tickets=ticket_client(self.options.client, settings.connect_timeout_s, proxy=self.options.proxy),
            bot_client=self.bot_client,
            ledger=self._ledger_for(settings),
            hooks=hooks,
        )

    def _ledger_for(self, settings: SupervisorSettings) -> Ledger | None:
        """`ledger=`; else one memory ledger for every run of this handler when the URL is `memory://` (so a
        duplicate is still caught after `disconnect()` and `connect()`); else None (the supervisor opens the URL)."""
        if self._ledger is not None:
            return self._ledger
        if settings.ledger_url == "memory://":
            self._memory = self._memory or MemoryLedger(settings.ledger_ttl_s)
            return self._memory
        return None
