"""`AsyncSupervisedSocketModeHandler`: Bolt's `AsyncSocketModeHandler`, supervised, for an `AsyncApp`.

    handler = AsyncSupervisedSocketModeHandler(app, app_token)   # was: AsyncSocketModeHandler(app, app_token)
    sys.exit(asyncio.run(handler.start_async()))   # 0 after a graceful stop, 78 when retrying is futile

or `await handler.connect_async()` (returns once a link is live) and later `await handler.close_async()`.

Where things run: the links, the acks and the ledger on the supervisor's own thread, with its own event loop,
so a listener that blocks the app's loop cannot delay an ack; the app's dispatch and its listeners on the loop
that called `connect_async()` / `start_async()`, where the app and its clients live (`nonstop.bolt.aio_runner`:
the same lanes, backlog, ledger and drain as for an `App`). That loop gets a task factory while the handler
runs (`nonstop.bolt.tasks`), to know when an event's listeners are done; the one it had is given back.

The answer path: the handler adds a middleware to the app (`nonstop.outbound.aio_client.govern`), so that each
request's `client` and `say` go through the handler's governor (`self.outbound`, an `AsyncOutbound` on the
app's loop), as `python app.py`'s listeners do through theirs; docs/answer-path.md says what differs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from nonstop.bolt.aio_runner import AsyncBoltRunner
from nonstop.bolt.runner import FailureReply
from nonstop.bolt.tasks import TaskCounting
from nonstop.config.settings import SupervisorSettings
from nonstop.config.urls import shared_ledger
from nonstop.handlers.background import Background, StopOnSignals
from nonstop.handlers.base import HandlerBase
from nonstop.handlers.client import AsyncSupervisedSocketModeClient
from nonstop.ledger import Ledger
from nonstop.outbound.aio import AsyncOutbound
from nonstop.outbound.aio_client import govern
from nonstop.outbound.client import governed_copy
from nonstop.outbound.metrics import outbound_metrics_in
from nonstop.outbound.scopes import say_history
from nonstop.outbound.sync import Outbound
from nonstop.status import TELEMETRY, Telemetry
from nonstop.status.snapshot import LinksView

if TYPE_CHECKING:
    from nonstop.outbound.shared import AsyncSharedBuckets

__all__ = ["AsyncSupervisedSocketModeHandler"]


class AsyncSupervisedSocketModeHandler(HandlerBase):
    """Runs a Bolt `AsyncApp` over Socket Mode with supervised links, an event ledger, and a drain on stop.

    Args:
        app: the Bolt `AsyncApp` (an `App` goes to `SupervisedSocketModeHandler`).
        app_token: the app-level token (`xapp-`); default: SLACK_APP_TOKEN.
        logger: where the handler's own lines and traces go (default: the app's logger).
        web_client: the Web API client whose URL, proxy and TLS are used for `apps.connections.open` and the
            WebSockets (default: the app's).
        proxy: the proxy for `apps.connections.open` and the WebSockets.
        ping_interval: seconds between pings of every link (default: NONSTOP_PING_INTERVAL, 2.25 s).
        loop: the loop the app runs on; it must be the one that awaits `connect_async()` / `start_async()`.
        concurrency: events in progress on the app's loop at once (default: NONSTOP_HANDLER_THREADS, 32).
        settings: the supervisor's settings; given, the environment's `NONSTOP_*` are not read.
        ledger: where events are recorded (default: see `nonstop.handlers.setup`).
        telemetry: the health record that status, probes and metrics read.
        failure_reply: what a user is told when Bolt itself fails on their slash command.

    Each request's `client` and `say` go through `self.outbound` (the answer path, NONSTOP_REPLY_DEADLINE and
    NONSTOP_UNSURE_ANSWER; with `settings=`, their defaults). Raises `TypeError`/`ValueError` for a keyword it
    cannot honour, `ConfigError` for a bad `NONSTOP_*` value.
    """

    def __init__(  # noqa: PLR0917 - Bolt's own signature, its positional order included
        self,
        app: AsyncApp,
        app_token: str | None = None,
        logger: logging.Logger | None = None,
        web_client: AsyncWebClient | None = None,
        proxy: str | None = None,
        ping_interval: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        concurrency: int | None = None,
        settings: SupervisorSettings | None = None,
        ledger: Ledger | None = None,
        telemetry: Telemetry = TELEMETRY,
        failure_reply: FailureReply | None = None,
    ) -> None:
        options = {"logger": logger, "web_client": web_client, "proxy": proxy, "ping_interval": ping_interval}
        super().__init__(
            app,
            app_token,
            options | {"concurrency": concurrency},
            wants="AsyncApp",
            other="SupervisedSocketModeHandler",
            settings=settings,
            ledger=ledger,
            telemetry=telemetry,
            failure_reply=failure_reply,
        )
        self._loop = loop
        self.client = AsyncSupervisedSocketModeClient(
            self,
            app_token=self.app_token,
            web_client=self.options.client,
            logger=self.options.logger,
            ping_interval=self._setup.settings.ping_interval_s,
        )
        self._counting: TaskCounting | None = None
        answers, ledger_url = self._setup.answers, self._setup.settings.ledger_url
        shared: AsyncSharedBuckets | None = None
        if shared_ledger(ledger_url):  # replicas: one posting budget on their Redis
            from nonstop.outbound.shared import AsyncSharedBuckets as Buckets  # noqa: PLC0415 - the redis extra

            shared = Buckets.from_url(ledger_url)
        self._shared = shared
        self.outbound = AsyncOutbound(
            answers,
            schedule=self._setup.settings.retry_schedule,
            metrics=outbound_metrics_in(telemetry.metrics.registry),
            shared=shared,
        )
        scopes = self.outbound.core.scopes
        scopes.on_change(lambda _granted: say_history(scopes, answers.unsure_answer))
        govern(app, self.outbound, telemetry)
        # Catch-up reads history from threads, so the bot's own calls get a threaded governor of their own (its
        # calls go at once or wait on their thread: no sender threads) over a copy of the app's client settings.
        self._own_calls = Outbound(answers, schedule=self._setup.settings.retry_schedule)
        self._setup.bot_client = governed_copy(app.client, self._own_calls, telemetry)

    # -- Bolt's surface ------------------------------------------------------------------------------

    async def start_async(self) -> int:
        """Run until stopped; return the exit code: 0 after a graceful stop (the first SIGTERM or SIGINT, when the
        loop runs in the main thread, drains in-flight work; a second exits at once), 78 for what retrying cannot
        fix (said in the log). Owns the process: a durable ledger by default, the health server."""
        if self._background is not None and self._background.running:
            raise RuntimeError("start_async() after connect_async(): already running; close_async() it first")
        background = self._launch(own_process=True)
        stopper = StopOnSignals(background.supervisor.request_stop)
        if threading.current_thread() is threading.main_thread():
            stopper.install(asyncio.get_running_loop())
        try:
            return await asyncio.shield(asyncio.wrap_future(background.ended))
        finally:
            stopper.uninstall()
            self._finish()

    async def connect_async(self) -> None:
        """Run in the background; return once a link is live. Raises `ConfigError` with what retrying cannot fix.
        A second call while connected does nothing; after `disconnect_async()` it connects again."""
        if self._closed:
            raise RuntimeError("this handler is closed; make a new one")
        background = self._background
        if background is None or not background.running:
            background = self._launch(own_process=False)
        await asyncio.shield(asyncio.wrap_future(background.live))

    async def disconnect_async(self) -> None:
        """Stop gracefully (drain, close the links) and wait; `connect_async()` connects again. The app's loop
        keeps running the listeners under way meanwhile."""
        background = self._background
        if background is not None:
            background.supervisor.request_stop("disconnect_async() called")
            await asyncio.shield(asyncio.wrap_future(background.ended))
        self._finish()

    async def close_async(self) -> None:
        """Stop for good: like `disconnect_async()`, and no reconnect, no listener, no thread of the handler after."""
        self._closed = True
        self.client.closed = True
        await self.disconnect_async()
        self._own_calls.close()
        if self._shared is not None:
            await self._shared.close()

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        """Bolt's `handle`: run the app for `req` and send its response through `client`, bypassing the ledger
        and lanes (the handler itself never calls it)."""
        started = time.time()
        await send_async_response(client, req, await run_async_bolt_app(self.app, req), started)

    # -- for the client and for status ---------------------------------------------------------------------

    async def send_text_async(self, text: str) -> bool:
        """Send one text frame on a live link; False when none could."""
        sending = self._send_text(text)
        return sending is not None and bool(await asyncio.wrap_future(sending))

    # -- runs ----------------------------------------------------------------------------------------------

    def _launch(self, *, own_process: bool) -> Background:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("loop= is not the running loop: await the handler on the loop the app runs on")
        self._setup.health(own_process=own_process)  # first: a HEALTH_PORT that cannot be used leaves nothing behind
        self._counting = TaskCounting(loop)
        self._counting.install()
        self.client.loop = loop
        hooks = self.client.hooks()
        hooks.on_view = self._on_view

        def runner(settings: SupervisorSettings) -> AsyncBoltRunner:
            return AsyncBoltRunner(
                self.app,
                loop,
                event_concurrency=settings.handler_threads,
                command_concurrency=settings.command_threads,
                telemetry=self._telemetry,
                failure_reply=self._failure_reply,
            )

        self.supervisor = self._setup.supervisor(own_process=own_process, runner=runner, hooks=hooks)
        background = self._background = Background(self.supervisor, hooks)
        background.start()
        return background

    def _finish(self) -> None:
        """After a run: the loop's task factory back, and nothing left that says connected."""
        background = self._background
        if background is not None and background.ended.done():
            self.exit_code = background.ended.result()
        if self._counting is not None:
            self._counting.uninstall()
            self._counting = None
        self._view = LinksView()
