"""`SupervisedSocketModeHandler`: Bolt's `SocketModeHandler`, supervised. The same constructor and methods:

    handler = SupervisedSocketModeHandler(app, app_token)      # was: SocketModeHandler(app, app_token)
    sys.exit(handler.start())   # blocks; 0 after a graceful stop (SIGTERM/SIGINT), 78 when retrying is futile

or `handler.connect()` (returns once a link is live; the links run on a thread of their own) and later
`handler.close()`. What each stock keyword means here: `nonstop.handlers.options`; the defaults it takes from
the environment (settings, ledger, health server): `nonstop.handlers.setup`.

The answer path: the handler adds a middleware to the app (`nonstop.outbound.client.govern`), so that each
request's `client` and `say` go through the handler's governor (`self.outbound`, an `Outbound`), as `python
app.py`'s listeners do through theirs; an `App` built with a governor of its own (`nonstop.startup.build_app`)
keeps it, and the handler drains that one. docs/answer-path.md says what stays outside.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop.bolt.runner import BoltRunner, FailureReply
from nonstop.config.settings import SupervisorSettings
from nonstop.handlers.background import Background, supervise
from nonstop.handlers.base import HandlerBase
from nonstop.handlers.client import SupervisedSocketModeClient
from nonstop.ledger import Ledger
from nonstop.links.holding import LinkHooks
from nonstop.outbound.client import built_with, govern, governed_copy
from nonstop.outbound.sync import Outbound
from nonstop.status import TELEMETRY, Telemetry
from nonstop.status.snapshot import LinksView
from nonstop.supervisor import Supervisor

__all__ = ["SupervisedSocketModeHandler"]

log = logging.getLogger("nonstop")


class SupervisedSocketModeHandler(HandlerBase):
    """Runs a Bolt `App` over Socket Mode with supervised links, an event ledger, and a drain on stop.

    Args:
        app: the Bolt `App` (an `AsyncApp` goes to `AsyncSupervisedSocketModeHandler`).
        app_token: the app-level token (`xapp-`); default: SLACK_APP_TOKEN.
        logger: where the handler's own lines and traces go (default: the app's logger).
        web_client: the Web API client for `apps.connections.open`; its proxy and TLS reach the WebSocket too.
        proxy: the proxy for `apps.connections.open` and the WebSockets.
        proxy_headers: only `Proxy-Authorization: Basic …` (the proxy's login).
        auto_reconnect_enabled: must be True: a supervised handler always reconnects.
        trace_enabled: a DEBUG line per frame received and sent.
        all_message_trace_enabled: each frame in full, at DEBUG.
        ping_pong_trace_enabled: each ping and pong, at DEBUG.
        ping_interval: seconds between pings of every link (default: NONSTOP_PING_INTERVAL, 2.25 s).
        receive_buffer_size: accepted, no effect (asyncio reads what the socket has).
        concurrency: event listeners running at once (default: NONSTOP_HANDLER_THREADS, 32).
        settings: the supervisor's settings; given, the environment's `NONSTOP_*` are not read.
        ledger: where events are recorded (default: see `nonstop.handlers.setup`).
        telemetry: the health record that status, probes and metrics read.
        failure_reply: `failure_reply(ref)` is what a user is told when Bolt itself fails on their slash command
            (listener errors go to the App's own error handler); without it the ack carries no text.

    Raises `TypeError`/`ValueError` for a keyword it cannot honour, `ConfigError` for a bad `NONSTOP_*` value
    (one line each). The handler installs its lanes (`nonstop.bolt.lanes`) as the App's listener executor, and
    its governor (`self.outbound`: NONSTOP_REPLY_DEADLINE and NONSTOP_UNSURE_ANSWER, their defaults with
    `settings=`) under each request's `client` and `say`, unless the App was built with one.
    """

    def __init__(  # noqa: PLR0917 - Bolt's own signature, its positional order included
        self,
        app: App,
        app_token: str | None = None,
        logger: logging.Logger | None = None,
        web_client: WebClient | None = None,
        proxy: str | None = None,
        proxy_headers: dict[str, str] | None = None,
        auto_reconnect_enabled: bool = True,
        trace_enabled: bool = False,
        all_message_trace_enabled: bool = False,
        ping_pong_trace_enabled: bool = False,
        ping_interval: float | None = None,
        receive_buffer_size: int = 1024,
        concurrency: int | None = None,
        *,
        settings: SupervisorSettings | None = None,
        ledger: Ledger | None = None,
        telemetry: Telemetry = TELEMETRY,
        failure_reply: FailureReply | None = None,
    ) -> None:
        options = {
            "logger": logger,
            "web_client": web_client,
            "proxy": proxy,
            "proxy_headers": proxy_headers,
            "auto_reconnect_enabled": auto_reconnect_enabled,
            "ping_interval": ping_interval,
            "receive_buffer_size": receive_buffer_size,
            "concurrency": concurrency,
        }
        super().__init__(
            app,
            app_token,
            options,
            wants="App",
            other="AsyncSupervisedSocketModeHandler",
            settings=settings,
            ledger=ledger,
            telemetry=telemetry,
            failure_reply=failure_reply,
        )
        self.client = SupervisedSocketModeClient(
            self,
            app_token=self.app_token,
            web_client=self.options.client,
            logger=self.options.logger,
            trace_enabled=trace_enabled,
            all_message_trace_enabled=all_message_trace_enabled,
            ping_pong_trace_enabled=ping_pong_trace_enabled,
            ping_interval=self._setup.settings.ping_interval_s,
        )
        self._lock = threading.Lock()
        built = built_with(app)  # python app.py's App comes with its governor, its own client included
        self._owns_outbound = built is None
        self.outbound = built.outbound if built is not None else self._new_outbound(telemetry)
        govern(app, self.outbound, telemetry)
        if built is None:  # the bot's own calls (catch-up's reads of history) through the governor too
            self._setup.bot_client = governed_copy(app.client, self.outbound, telemetry)

    # -- Bolt's surface ------------------------------------------------------------------------------

    def start(self) -> int:
        """Run in this thread until stopped; return the exit code: 0 after a graceful stop (the first SIGTERM or
        SIGINT, when called from the main thread, drains in-flight work; a second exits at once), 78 for what
        retrying cannot fix (said in the log). Owns the process: a durable ledger by default, the health server,
        the process-wide tuning (`nonstop.handlers.setup`)."""
        with self._lock:
            if self._background is not None and self._background.running:
                raise RuntimeError("start() after connect(): the handler is already running; close() it first")
            self._setup.health(own_process=True)
            supervisor = self._new_run(own_process=True)
        main = threading.current_thread() is threading.main_thread()
        try:
            code = self.exit_code = asyncio.run(supervise(supervisor, signals=main))
        finally:
            self._view = LinksView()
        if not supervisor.drained:
            # A listener still running would keep the interpreter from exiting (executor threads are joined at
            # exit): the drain deadline has passed, so leave now.
            logging.shutdown()
            os._exit(code)
        return code

    def connect(self) -> None:
        """Run in the background; return once a link is live. Raises `ConfigError` with what retrying cannot fix
        (a revoked token, Socket Mode turned off, a ledger that cannot be used). A second call while connected
        does nothing; after `disconnect()` it connects again."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this handler is closed; make a new one")
            background = self._background
            if background is None or not background.running:
                hooks = self.client.hooks()
                self._setup.health(own_process=False)
                background = self._background = Background(self._new_run(own_process=False, hooks=hooks), hooks)
                background.ended.add_done_callback(self._ended)
                background.start()
        background.live.result()

    def disconnect(self, timeout_s: float | None = None) -> int | None:
        """Stop gracefully (drain, close the links) and wait; `connect()` connects again. The exit code, or None
        if still stopping after `timeout_s`."""
        background = self._background
        if background is None:
            return self.exit_code
        return background.stop("disconnect() called", timeout_s)

    def close(self, timeout_s: float | None = None) -> int | None:
        """Stop for good: like `disconnect()`, and no reconnect, no listener, no thread of the handler after it."""
        with self._lock:
            self._closed = True
        code = self.disconnect(timeout_s)
        self.client.shutdown()
        if self._owns_outbound:
            self.outbound.close()  # answers still owed after the drain stay unfinished in the ledger
        return code

    def handle(self, client: Any, req: SocketModeRequest) -> None:
        """Bolt's `handle`: run the app for `req` and send its response through `client`, bypassing the ledger
        and lanes (the handler itself never calls it)."""
        started = time.time()
        send_response(client, req, run_bolt_app(self.app, req), started)

    # -- for the client and for status ---------------------------------------------------------------------

    def send_text(self, text: str, timeout_s: float = 5.0) -> bool:
        """Send one text frame on a live link (from any thread but the links' own); False when none could."""
        sending = self._send_text(text)
        try:
            return sending is not None and bool(sending.result(timeout_s))
        except TimeoutError:
            return False

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Until the background run (`connect()`) ends on its own or is stopped; its exit code (None: still running)."""
        background = self._background
        if background is None:
            return self.exit_code
        try:
            return background.ended.result(timeout_s)
        except TimeoutError:
            return None

    # -- runs ----------------------------------------------------------------------------------------------

    def _new_outbound(self, telemetry: Telemetry) -> Outbound:
        settings = self._setup.settings
        return Outbound.for_ledger(
            self._setup.answers,
            ledger_url=settings.ledger_url,
            schedule=settings.retry_schedule,
            registry=telemetry.metrics.registry,
        )

    def _new_run(self, *, own_process: bool, hooks: LinkHooks | None = None) -> Supervisor:
        hooks = hooks or self.client.hooks()
        hooks.on_view = self._on_view
        self.outbound.start()  # on the caller's thread, not a listener's (their priority: nonstop.bolt.lanes)
        self.supervisor = self._setup.supervisor(own_process=own_process, runner=self._runner, hooks=hooks)
        return self.supervisor

    def _runner(self, settings: SupervisorSettings) -> BoltRunner:
        return BoltRunner(
            self.app,
            event_threads=settings.handler_threads,
            command_threads=settings.command_threads,
            telemetry=self._telemetry,
            handler_nice=settings.handler_nice,
            failure_reply=self._failure_reply,
            answers_sent=self.outbound.wait_idle,  # a stop waits for the answers still owed
        )

    def _ended(self, ended: Any) -> None:
        self.exit_code = ended.result()
        self._view = LinksView()
