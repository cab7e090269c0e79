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
import time
from collections.abc import Callable

from slack_bolt import App
from slack_sdk import WebClient

from nonstop.backends import Backends, open_backends
from nonstop.bolt.runner import BoltRunner, FailureReply
from nonstop.config.settings import SupervisorSettings
from nonstop.coordination.base import LocalCoordinator
from nonstop.errors import EX_CONFIG, ConfigError
from nonstop.ledger import Ledger, LedgerError
from nonstop.links.pool import LinkPool
from nonstop.net.retry import DEAD_TOKEN_ERRORS, fatal_message, is_fatal
from nonstop.pipeline.core import EventPipeline
from nonstop.pipeline.driver import PipelineDriver
from nonstop.status import State, Telemetry
from nonstop.status.reporter import Phase, StateReporter
from nonstop.webclient import InstrumentedWebClient

__all__ = ["Supervisor"]

log = logging.getLogger("nonstop.supervisor")
_QUIET = logging.getLogger("nonstop.supervisor.tickets")
STOP_TASKS_S = 5.0
"""How long the links, the heartbeat and the housekeeping get to end once cancelled at a stop."""
_QUIET.setLevel(logging.CRITICAL)


class Supervisor:
    """Args:
    app: the Bolt app whose listeners run.
    app_token: the app-level token (`xapp-`).
    settings: links, timers, lanes, ledger.
    telemetry: the health record status, probes and metrics read.
    ticket_client: the client for `apps.connections.open` (default: like the app's, short, no retries).
    failure_reply: what a user is told when Bolt itself fails on their slash command.
    ledger: a ledger for this process alone (default: the one `settings.ledger_url` names).
    """

    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        settings: SupervisorSettings,
        telemetry: Telemetry,
        ticket_client: WebClient | None = None,
        rng: random.Random | None = None,
        failure_reply: FailureReply | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._app = app
        self._app_token = app_token
        self.settings = settings
        self._failure_reply = failure_reply
        self._given_ledger = ledger
        self._telemetry = telemetry
        self._rng = rng
        telemetry.target_connections = settings.connections
        telemetry.stale_after_s = settings.stale_after_s  # readiness judges freshness by the same limit
        base = app.client
        self._tickets = ticket_client or WebClient(
            base_url=base.base_url,
            timeout=int(max(1, settings.connect_timeout_s)),
            ssl=base.ssl,  # the same CAs and proxy as every other connection (nonstop.net.network)
            proxy=base.proxy,
            retry_handlers=[],  # the retry policy is the pool's
            logger=_QUIET,  # failures are logged once, by the pool, with what happens next
        )
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
            log.critical("cannot use the event ledger (NONSTOP_LEDGER=%s): %s", self.settings.ledger_url, e)
            self._phase = Phase(State.FATAL, "ledger")
            self._telemetry.set_state(State.FATAL, "ledger")
            return EX_CONFIG
        s = self.settings
        runner = BoltRunner(
            self._app,
            event_threads=s.handler_threads,
            command_threads=s.command_threads,
            telemetry=self._telemetry,
            handler_nice=s.handler_nice,
            failure_reply=self._failure_reply,
        )
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
            ttl_s=s.dedup_ttl_s,
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
        client, loop = self._app.client, self._loop
        if not isinstance(client, InstrumentedWebClient) or loop is None:
            return lambda: None

        def on_call(_method: str, outcome: str) -> None:  # on whichever thread made the call
            if outcome in DEAD_TOKEN_ERRORS:
                with contextlib.suppress(RuntimeError):  # the loop is already closed: stopped anyway
                    loop.call_soon_threadsafe(self._fatal, outcome, "bot", "")

        return client.calls.watch(on_call)

    # -- stopping ----------------------------------------------------------------------------------

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
        log.critical(fatal_message(code, token, detail) if is_fatal(code) else code, extra={"reason": code})
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
        self, backends: Backends, runner: BoltRunner, driver: PipelineDriver, tasks: list[asyncio.Task[None]]
    ) -> None:
        assert self._pool is not None
        s, ledger, coordinator = self.settings, backends.ledger, backends.coordinator
        coordinator.stop_taking_over()
        in_flight = driver.backlog
        driver.stop_accepting()
        leave_queued = ledger.durable
        started = time.monotonic()
        self.drained = await asyncio.to_thread(runner.stop_events, s.drain_timeout_s, leave_queued=leave_queued)
        outbound = getattr(self._app.client, "outbound", None)  # answers still waiting hold their events
        if self.drained and outbound is not None:
            left = max(0.0, s.drain_timeout_s - (time.monotonic() - started))
            self.drained = await asyncio.to_thread(outbound.wait_idle, left)
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
    ids = ", ".join(key.split(":", 1)[1] for key in keys[:20])
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
