"""The supervisor: composes the parts, runs them until told to stop (or until retrying is futile), and stops
them in the right order. It decides nothing about links, events or replicas itself.

    backends (ledger + coordinator, from NONSTOP_LEDGER)
    link pool ──envelopes──▶ pipeline driver ──events, interactions──▶ Bolt runner
        ▲                         │                                        │
        └────────── acks ─────────┘◀──────── finished, ack payloads ───────┘

docs/architecture.md draws the path of one event and says what each part does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable

from slack_sdk import WebClient

from nonstop.backends import Backends, open_backends
from nonstop.catchup import start_catch_up
from nonstop.config.settings import SupervisorSettings
from nonstop.coordination.base import LocalCoordinator
from nonstop.errors import EX_CONFIG, ConfigError
from nonstop.ledger import Ledger, LedgerError
from nonstop.links.holding import LinkHooks
from nonstop.links.pool import LinkPool
from nonstop.net.retry import DEAD_TOKEN_ERRORS, fatal_message, is_fatal
from nonstop.pipeline.core import EventPipeline
from nonstop.pipeline.driver import PipelineDriver, Runner
from nonstop.pipeline.envelopes import key_label
from nonstop.redact import redact_url
from nonstop.status import State, Telemetry
from nonstop.status.reporter import Phase, StateReporter
from nonstop.webclient import InstrumentedWebClient

__all__ = ["Supervisor"]

log = logging.getLogger("nonstop.supervisor")
STOP_TASKS_S = 5.0
"""How long the links, the heartbeat and the housekeeping get to end once cancelled at a stop."""


class Supervisor:
    """Args:
    app_token: the app-level token (`xapp-`).
    settings: links, timers, lanes, ledger.
    telemetry: the health record status, probes and metrics read.
    runner: makes the runner of the app's listeners, once per `run()` (a `nonstop.pipeline.driver.Runner`).
    tickets: the client for `apps.connections.open` (`nonstop.links.tickets.ticket_client`: short, no retries).
    bot_client: the app's own Web API client; when Slack answers one of its calls (listeners' included) with
        "this token is dead", the supervisor stops (needs an `InstrumentedWebClient`, which reports them).
    ledger: a ledger for this process alone (default: the one `settings.ledger_url` names).
    hooks: what a drop-in handler adds to the links (`LinkHooks`).
    """

    def __init__(
        self,
        app_token: str,
        *,
        settings: SupervisorSettings,
        telemetry: Telemetry,
        runner: Callable[[], Runner],
        tickets: WebClient,
        bot_client: object = None,
        rng: random.Random | None = None,
        ledger: Ledger | None = None,
        hooks: LinkHooks | None = None,
    ) -> None:
        self._app_token = app_token
        self.settings = settings
        self._make_runner = runner
        self._bot_client = bot_client
        self._given_ledger = ledger
        self._telemetry = telemetry
        self._rng = rng
        self._hooks = hooks
        telemetry.target_connections = settings.connections
        telemetry.stale_after_s = settings.stale_after_s  # readiness judges freshness by the same limit
        self._tickets = tickets
        self.fatal_message: str | None = None  # what retrying could not fix, once it stopped for it
        self._phase = Phase(State.STARTING)
        self._exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_asked: str | None = None  # request_stop() before run(): honoured as soon as it starts
        self._loop_lock = threading.Lock()  # request_stop() from another thread vs run() taking the loop
        self._pool: LinkPool | None = None
        self.drained = True

    async def run(self) -> int:
        """Run until `request_stop()` or a fatal error; return the process exit code (0 or 78)."""
        with self._loop_lock:
            self._loop = asyncio.get_running_loop()
            stop_asked = self._stop_asked
        self._stop_event = asyncio.Event()
        try:
            backends = await self._open_backends()
            recovered = await backends.ledger.open()
        except (ConfigError, LedgerError) as e:
            where = redact_url(self.settings.ledger_url)
            self.fatal_message = f"cannot use the event ledger (NONSTOP_LEDGER={where}): {e}"
            log.critical("%s", self.fatal_message)
            self._phase = Phase(State.FATAL, "ledger")
            self._telemetry.set_state(State.FATAL, "ledger")
            return EX_CONFIG
        s = self.settings
        runner = self._make_runner()
        core = EventPipeline(
            max_backlog=s.max_backlog,
            dedup_ttl_s=s.dedup_ttl_s,
            durable=backends.ledger.durable,
            observer=self._telemetry,
        )
        coordinator = backends.coordinator
        await coordinator.start()
        pool = self._pool = LinkPool(
            s,
            app_token=self._app_token,
            tickets=self._tickets,
            share=coordinator.share,
            telemetry=self._telemetry,
            on_fatal=self._fatal,
            rng=self._rng,
            hooks=self._hooks,
        )
        driver = PipelineDriver(core, ledger=backends.ledger, runner=runner, acks=pool)
        pool.deliver_to(driver.receive)
        reporter = StateReporter(lambda: pool.view, lambda: self._phase, lambda: coordinator.view)
        self._telemetry.bind_report(reporter.report)
        driver.replay(recovered, "were acked but never finished before the last stop")
        unwatch = self._watch_bot_calls()
        self._phase = Phase(None)
        if stop_asked is not None:
            self._begin_stop(stop_asked)
        tasks = [
            asyncio.create_task(pool.run(), name="links"),
            asyncio.create_task(coordinator.run(driver.replay), name="coordination"),
            asyncio.create_task(self._housekeeping(backends.ledger), name="ledger-housekeeping"),
            start_catch_up(
                s, client=self._bot_client, backends=backends, driver=driver, pool=pool, telemetry=self._telemetry
            ),
        ]
        await self._stop_event.wait()
        unwatch()
        try:
            await self._shutdown(backends, runner, driver, tasks)
        finally:
            self._telemetry.bind_report(None)
        return self._exit_code

    async def _open_backends(self) -> Backends:
        s = self.settings
        if self._given_ledger is not None:
            return Backends(self._given_ledger, LocalCoordinator(s.connections))
        return await open_backends(
            s.ledger_url,
            ttl_s=s.ledger_ttl_s,
            wish=s.connections,
            lease_s=s.lease_s,
            replica_name=s.replica_name,
            handled=lambda: self._telemetry.envelopes_handled,
        )

    async def _housekeeping(self, ledger: Ledger) -> None:
        """Forget done events once Slack can no longer retry them, so the ledger stays small."""
        interval = max(1.0, min(60.0, self.settings.dedup_ttl_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await ledger.prune()
            except LedgerError as e:
                log.warning("could not prune the event ledger: %s", e)

    def _watch_bot_calls(self) -> Callable[[], None]:
        """A bot that can no longer post is as deaf as one that cannot connect: when Slack answers any of its
        Web API calls (listeners' included) with "this token is dead", say so and stop. Needs the App's
        client to be an `InstrumentedWebClient` (as `nonstop.startup.build_app` makes it)."""
        client, loop = self._bot_client, self._loop
        if not isinstance(client, InstrumentedWebClient) or loop is None:
            return lambda: None

        def on_call(_method: str, outcome: str) -> None:  # on whichever thread made the call
            if outcome in DEAD_TOKEN_ERRORS:
                with contextlib.suppress(RuntimeError):  # the loop is already closed: stopped anyway
                    loop.call_soon_threadsafe(self._fatal, outcome, "bot", "")

        return client.calls.watch(on_call)

    # -- stopping ----------------------------------------------------------------------------------

    async def send_text(self, text: str) -> bool:
        """On the supervisor's loop: send one text frame on a live link; False when none could take it."""
        return self._pool is not None and not self.stopping and await self._pool.send_text(text)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop `run()` runs on (None before it starts)."""
        return self._loop

    def request_stop(self, why: str = "stop requested") -> None:
        """Thread-safe: begin a graceful stop (drain, close, exit 0)."""
        with self._loop_lock:
            if self._loop is None:
                self._stop_asked = why
                return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: already stopped
            self._loop.call_soon_threadsafe(self._begin_stop, why)

    @property
    def stopping(self) -> bool:
        return self._phase.state in (State.STOPPING, State.FATAL) or self._stop_asked is not None

    def _fatal(self, code: str, token: str = "app", detail: str = "") -> None:
        if self._phase.state in (State.STOPPING, State.FATAL):
            return
        self._exit_code = EX_CONFIG
        self._phase = Phase(State.FATAL, code)
        self.fatal_message = fatal_message(code, token, detail) if is_fatal(code) else code
        log.critical(self.fatal_message, extra={"reason": code})
        self._stop()

    def _begin_stop(self, why: str) -> None:
        if self._phase.state in (State.STOPPING, State.FATAL):
            return
        self._phase = Phase(State.STOPPING)
        log.info("%s: stopping gracefully (no new envelopes; finishing in-flight work)", why)
        self._stop()

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
        if self._stop_event is not None:
            self._stop_event.set()

    async def _shutdown(
        self, backends: Backends, runner: Runner, driver: PipelineDriver, tasks: list[asyncio.Task[None]]
    ) -> None:
        assert self._pool is not None
        s, ledger, coordinator = self.settings, backends.ledger, backends.coordinator
        coordinator.stop_taking_over()
        in_flight = driver.backlog
        driver.stop_accepting()
        leave_queued = ledger.durable
        # The runner waits for the listeners and then for the answers they still owe (an App's, in the governor).
        self.drained = await asyncio.to_thread(runner.stop_events, s.drain_timeout_s, leave_queued=leave_queued)
        unfinished = await driver.settle()
        if not self.drained:
            log.warning("in-flight handlers did not finish within %.1f s; exiting anyway", s.drain_timeout_s)
        elif in_flight:
            log.info("finished %d in-flight envelope(s)", in_flight)
        if unfinished:
            _say_unfinished(unfinished, ledger.durable, shared=coordinator.shared)
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=STOP_TASKS_S)
        if stuck:  # a task that swallowed its cancellation must not keep the process from exiting
            log.warning(
                "%d task(s) did not stop within %.0f s: %s", len(stuck), STOP_TASKS_S, [t.get_name() for t in stuck]
            )
        closed = await self._pool.close()
        runner.close()  # interactions were taken until the links closed
        await coordinator.leave()  # only now, with its links closed, may its share go to the others
        with contextlib.suppress(LedgerError):
            await backends.close()
        log.info("stopped; closed %d connection(s)", closed)


def _say_unfinished(keys: list[str], durable: bool, *, shared: bool) -> None:
    ids = ", ".join(key_label(key) for key in keys[:20])
    more = f" and {len(keys) - 20} more" if len(keys) > 20 else ""
    if shared:
        log.warning(
            "%d acked event(s) did not finish here; handed over to the other replicas through Redis: %s%s",
            len(keys),
            ids,
            more,
        )
    elif durable:
        log.warning(
            "%d acked event(s) did not finish; they stay in the ledger and run again at the next start: %s%s",
            len(keys),
            ids,
            more,
        )
    else:
        log.error(
            "%d acked event(s) did not finish and are lost (NONSTOP_LEDGER=memory:// keeps nothing): %s%s",
            len(keys),
            ids,
            more,
        )
