"""`BoltRunner`: runs a Bolt `App` for the pipeline, on threads, and says when each envelope's work is done.

Bolt's dispatch (middleware, matching) runs on a small pool per lane; the listeners it starts run in the
lane's own pool (`nonstop.bolt.lanes`), installed as the App's listener executor, so slash commands and
interactions are never queued behind event listeners stuck on a slow Web API. An event is done when its
dispatch and every listener it started have returned (`Tracker`); an interaction is done when Bolt has
decided its ack, which is built exactly as Bolt's own socket-mode adapter builds it (`send_response`).

The runner never touches a socket or the event loop: its callbacks run on its threads, and the caller hops
back to wherever it needs to be.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.internals import send_response
from slack_bolt.lazy_listener.thread_runner import ThreadLazyListenerRunner
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from nonstop.bolt.context import bolt_request
from nonstop.bolt.lanes import COMMANDS, EVENTS, LaneExecutor, Tracker, working_on
from nonstop.status import Telemetry

__all__ = [
    "DISPATCH_THREADS",
    "AckCapture",
    "BoltRunner",
    "FailureReply",
    "dispatch_failed",
    "dispatch_succeeded",
    "lower_priority",
]

log = logging.getLogger("nonstop.bolt")

DISPATCH_THREADS = 4
"""Per lane, threads that run Bolt's own dispatch (middleware, matching): short work; the listeners
themselves run in the lane's listener pool."""

FailureReply = Callable[[str], str]
"""failure_reply(ref) → the text to ack a slash command with when Bolt itself failed on it."""


def lower_priority(niceness: int) -> Callable[[], None] | None:
    """A thread initializer that makes listener threads yield the CPU to the loop that reads and acks
    envelopes, or None for `niceness` 0 (the default: a drop-in handler changes no thread of its host).

    Python threads share one GIL; when a burst of listeners is running, whichever runnable thread the
    kernel schedules first takes it next. A higher nice value on the listener threads (never on the loop)
    makes that the ack loop more often. Best effort: where per-thread priorities are missing or refused
    (a seccomp filter without @resources answers EPERM), threads keep the default.
    """
    if niceness <= 0:
        return None

    def initializer() -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)

    return initializer


class AckCapture:
    """Stands in for a socket-mode client so that Bolt's own `send_response` decides the ack payload."""

    def __init__(self) -> None:
        self.logger = log
        self.response: SocketModeResponse | None = None

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.response = response


class BoltRunner:
    """Args:
    app: the Bolt app; its listener executor becomes the runner's lanes.
    event_threads: event listeners running at once (the event lane).
    command_threads: slash command and interaction listeners running at once (their own lane).
    telemetry: where handler durations and failures are counted.
    handler_nice: niceness added to every thread of the runner (see `lower_priority`).
    failure_reply: what a user is told when Bolt itself fails on their slash command.
    answers_sent: `answers_sent(timeout_s)` waits until the answers the listeners still owe are sent, True if
        they were (the governor's `Outbound.wait_idle`): `stop_events` waits for them too.
    """

    def __init__(
        self,
        app: App,
        *,
        event_threads: int,
        command_threads: int,
        telemetry: Telemetry,
        handler_nice: int = 0,
        failure_reply: FailureReply | None = None,
        answers_sent: Callable[[float], bool] | None = None,
    ) -> None:
        self._app = app
        self._answers_sent = answers_sent
        self._telemetry = telemetry
        self._failure_reply = failure_reply
        nice = lower_priority(handler_nice)
        self._dispatch = {
            lane: ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix=f"nonstop-dispatch-{lane}", initializer=nice)
            for lane in (EVENTS, COMMANDS)
        }
        self.lanes = LaneExecutor(
            {
                EVENTS: ThreadPoolExecutor(event_threads, thread_name_prefix="nonstop-listener", initializer=nice),
                COMMANDS: ThreadPoolExecutor(command_threads, thread_name_prefix="nonstop-command", initializer=nice),
            }
        )
        _install(app, self.lanes)
        self._idle = threading.Condition()
        self._interactions = 0  # interactions whose dispatch or listeners are still running

    def run_event(
        self, request: SocketModeRequest, done: Callable[[], None], runs: int = 1, *, recovered: bool = False
    ) -> bool:
        """Dispatch an event; `done()` (on a runner thread) once it and every listener it started have
        returned. `runs`: the ledger's count of its starts (its `Tracker` carries it to the answer path, which
        looks for an earlier run's replies before posting). `recovered`: it came by no link (Bolt's context says
        so, `nonstop.bolt.context`). False, and `done` never called, when the runner no longer takes events
        (stopping)."""
        try:
            self._dispatch[EVENTS].submit(self._run_event, request, done, runs, recovered)
        except RuntimeError:
            return False
        return True

    def run_interaction(self, request: SocketModeRequest, acked: Callable[[dict[str, Any] | None], None]) -> bool:
        """Dispatch an interaction; `acked(payload)` (on a runner thread) with what to ack it with. Taken until
        `close()`, also while stopping: a user is waiting."""
        with self._idle:
            self._interactions += 1
        try:
            self._dispatch[COMMANDS].submit(self._run_interaction, request, acked)
        except RuntimeError:
            self._interaction_over()
            return False
        return True

    def stop_events(self, timeout_s: float, *, leave_queued: bool) -> bool:
        """Take no new events and wait (at most `timeout_s`, from a thread other than the event loop's) for
        the events and interactions under way, then for the answers they still owe (`answers_sent`).
        `leave_queued`: events handed over but not started are dropped (the caller keeps them on record). True if
        everything finished, and every answer was sent, in time."""
        deadline = time.monotonic() + timeout_s
        finished = threading.Event()

        def wait_all() -> None:
            self._dispatch[EVENTS].shutdown(wait=True, cancel_futures=leave_queued)
            self.lanes.pools[EVENTS].shutdown(wait=True, cancel_futures=leave_queued)
            with self._idle:
                self._idle.wait_for(lambda: self._interactions == 0)
            finished.set()

        threading.Thread(target=wait_all, name="nonstop-drain", daemon=True).start()
        if not finished.wait(timeout_s):
            return False
        return self._answers_sent is None or self._answers_sent(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Take nothing more; threads still running finish on their own."""
        for pool in (*self._dispatch.values(), *self.lanes.pools.values()):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- on runner threads ---------------------------------------------------------------------------

    def _run_event(self, request: SocketModeRequest, done: Callable[[], None], runs: int, recovered: bool) -> None:
        tracker = Tracker(done, runs)
        try:
            with working_on(EVENTS, tracker):
                self._bolt(request, recovered)
        finally:
            tracker.release()

    def _run_interaction(self, request: SocketModeRequest, acked: Callable[[dict[str, Any] | None], None]) -> None:
        tracker = Tracker(self._interaction_over)
        try:
            with working_on(COMMANDS, tracker):
                payload = self._bolt(request)
            acked(payload)
        finally:
            tracker.release()

    def _interaction_over(self) -> None:
        with self._idle:
            self._interactions -= 1
            if self._interactions == 0:
                self._idle.notify_all()

    def _bolt(self, request: SocketModeRequest, recovered: bool | None = None) -> dict[str, Any] | None:
        """Run Bolt's dispatch for `request`; return the ack payload (interactions)."""
        started = time.time()
        try:
            bolt_response = self._app.dispatch(bolt_request(request, recovered))
            capture = AckCapture()
            send_response(capture, request, bolt_response, started)  # type: ignore[arg-type]
        except Exception:
            return dispatch_failed(request, started, self._telemetry, self._failure_reply)
        return dispatch_succeeded(request, started, self._telemetry, capture.response)


def dispatch_succeeded(
    request: SocketModeRequest, started: float, telemetry: Telemetry, response: SocketModeResponse | None
) -> dict[str, Any] | None:
    """Count a dispatch that returned; the payload to ack `request` with (what Bolt's adapter would send)."""
    telemetry.handled()
    telemetry.handler_done(request.type, time.time() - started, ok=True)
    return response.payload if response is not None else None


def dispatch_failed(
    request: SocketModeRequest, started: float, telemetry: Telemetry, failure_reply: FailureReply | None
) -> dict[str, Any] | None:
    """Log and count a dispatch that raised (from inside an `except`); the payload to ack `request` with: the
    failure reply for a slash command, if there is one."""
    log.exception(
        "handling envelope %s (%s) failed",
        request.envelope_id,
        request.type,
        extra={"envelope_id": request.envelope_id, "retry_attempt": request.retry_attempt},
    )
    telemetry.handler_done(request.type, time.time() - started, ok=False)
    telemetry.envelope(request.type, "failed")
    if request.type == "slash_commands" and failure_reply is not None:
        return {"text": failure_reply(request.envelope_id)}
    return None


def _install(app: App, lanes: LaneExecutor) -> None:
    """Make `lanes` the executor of Bolt's listeners (and lazy listeners) for `app`."""
    runner = app.listener_runner
    runner.listener_executor = lanes
    lazy = runner.lazy_listener_runner
    if isinstance(lazy, ThreadLazyListenerRunner):
        lazy.executor = lanes
