"""From envelope to Bolt and back: record, ack, run once, and know when each event is finished.

- `events_api` envelopes are admitted to the ledger and acked together, once per loop turn (one
  ledger write, then one socket write per link): the ack leaves only once the event is on record.
  New ones go to Bolt; duplicates (Slack's retries, the same event on another connection, an event
  already handled before a restart) are acked and suppressed. An event is finished — marked done in
  the ledger — when Bolt's dispatch and every listener it started have returned (see `lanes`).
- Slash commands and interactive payloads are acked with what Bolt's listener returns (the ack can
  carry the reply), exactly as Bolt's own `send_response` builds it. They run in a lane of their
  own, never behind event listeners, and are not recorded (Slack never redelivers them).
- Backpressure: at most `max_backlog` events are in progress (admitted, not finished). Past that,
  new events are left unacked, so Slack retries them later (or on another replica) instead of
  their piling up here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_bolt.lazy_listener.thread_runner import ThreadLazyListenerRunner
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from nonstop.dedup import TTLCache
from nonstop.lanes import COMMANDS, EVENTS, LaneExecutor, Tracker, working_on
from nonstop.ledger import Entry, Ledger, LedgerError
from nonstop.telemetry import Telemetry
from nonstop.turns import PerTurn

log = logging.getLogger("nonstop.dispatch")

START_WHEN_QUIET_S = 0.005
START_WITHIN_S = 0.5
"""Acks first: listeners start once envelopes stop arriving for 5 ms, and at most 500 ms after the
first waiting one was acked (see `Dispatcher._queue_starts`)."""

DISPATCH_THREADS = 4
"""Per lane, threads that run Bolt's own dispatch (middleware, matching): short work, the listeners
themselves run in the lane's listener pool."""


def lower_priority(niceness: int) -> Callable[[], None] | None:
    """A thread initializer that makes handler threads yield the CPU to the loop that reads and acks
    envelopes, or None for `niceness` 0 (the default: a drop-in handler changes no thread of its host).

    Python threads share one GIL; when a burst of handlers is running, whichever runnable thread the
    kernel schedules first takes it next. A higher nice value on the handler threads (never on the
    loop) makes that the ack loop more often. Best effort: where per-thread priorities are missing or
    refused (a seccomp filter without @resources answers EPERM), threads keep the default.
    """
    if niceness <= 0:
        return None

    def initializer() -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)

    return initializer


FailureReply = Callable[[str], str]
"""failure_reply(ref) → the text to ack a command or interaction with when Bolt itself failed on it."""

AckSender = Callable[[object, str, dict[str, Any] | None, str, float], None]
"""send_ack(link_it_came_on, envelope_id, payload_or_None, kind, received_at), on the event-loop thread: queues
the ack on its link; `flush_acks()` writes every queued ack at once (else the links write them at the end of
the loop turn)."""


def parse_request(message: dict[str, Any]) -> SocketModeRequest | None:
    """The envelope as slack_sdk's request type, or None when it cannot be handled: no type, or a
    payload that is not a JSON object (slack_sdk would raise on some of those, or invent a dict)."""
    if not isinstance(message.get("type"), str) or not isinstance(message.get("payload"), dict):
        return None
    try:
        return SocketModeRequest.from_dict(message)
    except (TypeError, ValueError):
        return None


def event_key(request: SocketModeRequest) -> str:
    event_id = request.payload.get("event_id")
    return f"event:{event_id}" if isinstance(event_id, str) and event_id else f"envelope:{request.envelope_id}"


class _AckCapture:
    """Stands in for a socket-mode client so Bolt's own `send_response` decides the ack payload."""

    def __init__(self) -> None:
        self.logger = log
        self.response: SocketModeResponse | None = None

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.response = response


@dataclass
class _Pending:
    """A non-event envelope being handled, and then the payload it was acked with."""

    payload: dict[str, Any] | None = None
    done: bool = False


@dataclass(frozen=True)
class _Arrival:
    link: object
    request: SocketModeRequest
    message: dict[str, Any]
    received_at: float
    text: str | None = None


class Dispatcher:
    def __init__(
        self,
        app: App,
        *,
        send_ack: AckSender,
        flush_acks: Callable[[], None],
        call_soon: Callable[[Callable[[], None]], None],
        telemetry: Telemetry,
        ledger: Ledger,
        dedup_ttl_s: float,
        event_threads: int,
        command_threads: int,
        max_backlog: int,
        handler_nice: int = 0,
        failure_reply: FailureReply | None = None,
        start_when_quiet_s: float = START_WHEN_QUIET_S,
        start_within_s: float = START_WITHIN_S,
    ) -> None:
        self._app = app
        self._send_ack = send_ack
        self._flush_acks = flush_acks
        self._call_soon = call_soon  # runs a callback on the event-loop thread, from any thread
        self._telemetry = telemetry
        self._ledger = ledger
        self._failure_reply = failure_reply
        self._max_backlog = max_backlog
        self._start_when_quiet_s = start_when_quiet_s
        self._start_within_s = start_within_s
        self._seen: TTLCache[_Pending] = TTLCache(dedup_ttl_s)  # commands and interactions, by envelope id
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
        self._lock = threading.Lock()
        self._in_flight = 0  # envelopes handed to Bolt and not yet returned from its dispatch
        self._running: set[str] = set()  # event keys admitted or replayed, not finished (the backlog)
        self._arrivals: PerTurn[_Arrival] = PerTurn(self._admit_batch)
        self._admitting = 0  # events of earlier turns on their way to the ledger
        self._finished: PerTurn[str] = PerTurn(lambda keys: self._background(self._record_finished(keys)))
        self._tasks: set[asyncio.Task[None]] = set()
        self._to_start: list[tuple[SocketModeRequest, str]] = []  # acked, listeners not started yet
        self._first_queued_at = 0.0
        self._start_timer: asyncio.TimerHandle | None = None
        self._saturated = False
        self.accepting = True
        telemetry.set_backlog(0, max_backlog)

    # -- on the event-loop thread --------------------------------------------------------------------

    def on_envelope(self, link: object, message: dict[str, Any], text: str | None = None) -> None:
        """`text`: the envelope as it came off the wire, if known; the ledger keeps it as is."""
        received_at = time.monotonic()
        envelope_id = message.get("envelope_id")
        kind = str(message.get("type") or "")
        if kind not in ("events_api", "slash_commands", "interactive"):
            kind = "other"
        if not isinstance(envelope_id, str) or not envelope_id:
            log.warning("ignored a frame with no usable envelope_id (type=%r)", message.get("type"))
            self._telemetry.envelope(kind, "malformed")
            return
        self._telemetry.envelope(kind, "received")
        if not self.accepting:
            # Unacked, Slack redelivers it to a connection that is staying (or to another instance).
            log.info("stopping: left envelope %s unacked for Slack to redeliver", envelope_id)
            self._telemetry.envelope(kind, "refused_stopping")
            return
        request = parse_request(message)
        if request is None:
            payload = message.get("payload")
            log.error(
                "acked malformed envelope %s (type=%r, payload: %s): it cannot be handled",
                envelope_id,
                message.get("type"),
                "missing" if payload is None else type(payload).__name__,
                extra={"envelope_id": envelope_id},
            )
            self._telemetry.envelope(kind, "malformed")
            self._send_ack(link, envelope_id, None, kind, received_at)
            return
        if request.type == "events_api":
            self._on_event(_Arrival(link, request, message, received_at, text))
        else:
            self._on_interaction(link, request, kind, received_at)

    def _on_event(self, arrival: _Arrival) -> None:
        if len(self._running) + self._admitting + len(self._arrivals) >= self._max_backlog:
            self._telemetry.envelope("events_api", "refused_saturated")
            if not self._saturated:
                self._saturated = True
                log.warning(
                    "backlog full (%d events in progress, NONSTOP_MAX_BACKLOG=%d): new events are left unacked "
                    "for Slack to retry until it drains",
                    len(self._running),
                    self._max_backlog,
                )
            return
        self._arrivals.add(arrival)

    def _admit_batch(self, batch: list[_Arrival]) -> None:
        entries = [Entry(event_key(a.request), a.message, text=a.text) for a in batch]
        try:
            fresh = self._ledger.admit_now(entries)
        except LedgerError as e:
            self._not_admitted(batch, e)
            return
        if fresh is not None:  # a local ledger: on record now, so the acks leave in this turn too
            self._admitted(batch, entries, fresh)
            self._flush_acks()
            return
        self._admitting += len(batch)
        self._background(self._admit(batch, entries))

    async def _admit(self, batch: list[_Arrival], entries: list[Entry]) -> None:
        try:
            fresh = await self._ledger.admit(entries)
        except LedgerError as e:
            self._admitting -= len(batch)
            self._not_admitted(batch, e)
            return
        self._admitting -= len(batch)
        self._admitted(batch, entries, fresh)
        self._flush_acks()

    def _not_admitted(self, batch: list[_Arrival], error: LedgerError) -> None:
        # Not on record, so not acked: Slack retries them, and nothing is lost while the ledger is down.
        log.error("could not record %d event(s), left unacked for Slack to retry: %s", len(batch), error)
        for _ in batch:
            self._telemetry.envelope("events_api", "refused_ledger")

    def _admitted(self, batch: list[_Arrival], entries: list[Entry], fresh: list[bool]) -> None:
        to_start: list[tuple[SocketModeRequest, str]] = []
        for arrival, entry, new in zip(batch, entries, fresh, strict=True):
            request = arrival.request
            self._send_ack(arrival.link, request.envelope_id, None, "events_api", arrival.received_at)
            if new:
                self._running.add(entry.key)
                to_start.append((request, entry.key))
                continue
            self._telemetry.duplicate()
            self._telemetry.envelope("events_api", "duplicate")
            log.info(
                "suppressed a duplicate delivery of %s (retry_attempt=%s, retry_reason=%s)",
                entry.key.split(":", 1)[1],
                request.retry_attempt,
                request.retry_reason or "-",
                extra={
                    "envelope_id": request.envelope_id,
                    "event_id": request.payload.get("event_id"),
                    "retry_attempt": request.retry_attempt,
                },
            )
        if to_start:
            self._telemetry.set_backlog(len(self._running), self._max_backlog)
            self._queue_starts(to_start)

    def _queue_starts(self, requests: list[tuple[SocketModeRequest, str]]) -> None:
        """Start these events' listeners once envelopes stop arriving for `start_when_quiet_s`, or at most
        `start_within_s` after the first of them was acked: acks first, listeners after.

        Why: every runnable listener thread competes with this loop for the GIL, and under a burst the
        loop held it about one sample in ten (py-spy --gil), so the acks of the rest of the burst queued
        behind the listeners of its start (Slack times the ack, 3 s, not the reply). A lone event waits
        `start_when_quiet_s` (5 ms); a burst is acked at the loop's own pace, then its listeners run.
        The bound keeps a steady stream from starving the listeners; the backlog bound still applies.
        """
        if not self.accepting:  # stopping: what is on record runs at the next start, the rest runs now
            if not self._ledger.durable:
                for request, key in requests:
                    self._start_event(request, key)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._to_start:
            self._first_queued_at = now
        self._to_start.extend(requests)
        if self._start_timer is not None:
            self._start_timer.cancel()
        due = min(now + self._start_when_quiet_s, self._first_queued_at + self._start_within_s)
        self._start_timer = loop.call_at(due, self._start_queued)

    def _start_queued(self) -> None:
        for request, key in self._take_queued():
            self._start_event(request, key)

    def _take_queued(self) -> list[tuple[SocketModeRequest, str]]:
        """The events held back so far, and no timer left to start them."""
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        requests, self._to_start = self._to_start, []
        return requests

    def replay(self, entries: list[Entry]) -> int:
        """Run the events an earlier run (or a replica that died) acked and never finished; return how many will run."""
        started = 0
        for entry in entries:
            if entry.key in self._running:
                continue  # already running here
            request = parse_request(entry.envelope)
            if request is None:
                self._finish(entry.key)
                continue
            self._start_event(request, entry.key, runs=entry.runs)
            started += 1
        return started

    def _start_event(self, request: SocketModeRequest, key: str, runs: int = 1) -> None:
        self._running.add(key)
        self._telemetry.set_backlog(len(self._running), self._max_backlog)
        with self._lock:
            self._in_flight += 1
        try:
            self._dispatch[EVENTS].submit(self._run_event, request, key, runs)
        except RuntimeError:  # pool shut down while stopping: it stays pending in the ledger
            with self._lock:
                self._in_flight -= 1
            log.info("stopping: event %s not started", key.split(":", 1)[1])

    def _finish(self, key: str) -> None:
        self._running.discard(key)
        self._telemetry.set_backlog(len(self._running), self._max_backlog)
        if self._saturated and len(self._running) < self._max_backlog:
            self._saturated = False
            log.info("backlog below NONSTOP_MAX_BACKLOG again (%d events in progress)", len(self._running))
        self._finished.add(key)

    async def _record_finished(self, keys: list[str]) -> None:
        try:
            await self._ledger.finish(keys)
        except LedgerError as e:
            log.error("could not mark %d event(s) done; they will run again at the next start: %s", len(keys), e)

    def _on_interaction(self, link: object, request: SocketModeRequest, kind: str, received_at: float) -> None:
        key = f"envelope:{request.envelope_id}"
        pending = self._seen.get(key)
        if pending is not None:
            self._telemetry.duplicate()
            self._telemetry.envelope(kind, "duplicate")
            log.info(
                "suppressed a duplicate delivery of envelope %s (%s)",
                request.envelope_id,
                request.type,
                extra={"envelope_id": request.envelope_id, "retry_attempt": request.retry_attempt},
            )
            # Slack does not redeliver commands or interactions (it retries Events API envelopes only); a
            # copy that arrives anyway is acked like the first, or left to the first's ack while in flight.
            if pending.done:
                self._send_ack(link, request.envelope_id, pending.payload, kind, received_at)
            return
        pending = _Pending()
        self._seen.put(key, pending)

        def acked(payload: dict[str, Any] | None) -> None:
            pending.payload, pending.done = payload, True
            self._send_ack(link, request.envelope_id, payload, kind, received_at)

        with self._lock:
            self._in_flight += 1
        try:
            self._dispatch[COMMANDS].submit(self._run_interaction, request, acked)
        except RuntimeError:
            with self._lock:
                self._in_flight -= 1

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    # -- on a dispatch thread ------------------------------------------------------------------------

    def _run_event(self, request: SocketModeRequest, key: str, runs: int = 1) -> None:
        tracker = Tracker(lambda: self._call_soon(lambda: self._finish(key)), runs)
        try:
            with working_on(EVENTS, tracker):
                self._bolt(request)
        finally:
            tracker.release()

    def _run_interaction(self, request: SocketModeRequest, on_done: Callable[[dict[str, Any] | None], None]) -> None:
        with working_on(COMMANDS):
            payload = self._bolt(request)
        self._call_soon(lambda: on_done(payload))

    def _bolt(self, request: SocketModeRequest) -> dict[str, Any] | None:
        """Run Bolt's dispatch for `request`; return the ack payload (commands and interactions)."""
        started = time.time()
        payload: dict[str, Any] | None = None
        try:
            bolt_response = run_bolt_app(self._app, request)
            capture = _AckCapture()
            send_response(capture, request, bolt_response, started)  # type: ignore[arg-type]
            if capture.response is not None:
                payload = capture.response.payload
            self._telemetry.handled()
            self._telemetry.handler_done(request.type, time.time() - started, ok=True)
        except Exception:
            log.exception(
                "handling envelope %s (%s) failed",
                request.envelope_id,
                request.type,
                extra={"envelope_id": request.envelope_id, "retry_attempt": request.retry_attempt},
            )
            self._telemetry.handler_done(request.type, time.time() - started, ok=False)
            self._telemetry.envelope(request.type, "failed")
            if request.type == "slash_commands" and self._failure_reply is not None:
                payload = {"text": self._failure_reply(request.envelope_id)}
        finally:
            with self._lock:
                self._in_flight -= 1
        return payload

    # -- stopping ------------------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """On the event-loop thread: take no new envelopes. Events already on record but not yet
        acked (this loop turn) are still acked. Events acked but not started yet are started now with
        `memory://`; with a durable ledger they stay on record for the next start (not begun, so not
        cut off half-way by the drain deadline): nothing that is on record is dropped."""
        self.accepting = False
        self._arrivals.flush_now()
        self._queue_starts(self._take_queued())  # now that it is stopping: started, or left on record

    def drain(self, timeout_s: float) -> bool:
        """After `stop_accepting()`, wait (bounded) for in-flight dispatches and listeners. True if all
        finished. Call from a thread other than the event loop's.

        With a durable ledger, events still queued (not started) are not started now: they are on
        record and run at the next start, so the drain deadline is spent on work already under way.
        Commands and interactions always run: their users are waiting."""
        finished = threading.Event()
        leave_queued = self._ledger.durable

        def wait_all() -> None:
            self._dispatch[EVENTS].shutdown(wait=True, cancel_futures=leave_queued)
            self._dispatch[COMMANDS].shutdown(wait=True)
            self.lanes.pools[EVENTS].shutdown(wait=True, cancel_futures=leave_queued)
            self.lanes.pools[COMMANDS].shutdown(wait=True)
            finished.set()

        threading.Thread(target=wait_all, name="nonstop-drain", daemon=True).start()
        return finished.wait(timeout_s)

    async def settle(self) -> list[str]:
        """After `drain()`: write what finished to the ledger; return the keys of events still unfinished."""
        await asyncio.sleep(0)  # let the finish callbacks queued by the last listeners run
        self._finished.flush_now()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return sorted(self._running)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def backlog(self) -> int:
        return len(self._running)

    @property
    def running(self) -> list[str]:
        """Keys of the events admitted or replayed here and not finished (their claims are renewed)."""
        return list(self._running)


def _install(app: App, lanes: Executor) -> None:
    """Make `lanes` the executor of Bolt's listeners (and lazy listeners) for `app`."""
    runner = app.listener_runner
    runner.listener_executor = lanes
    lazy = runner.lazy_listener_runner
    if isinstance(lazy, ThreadLazyListenerRunner):
        lazy.executor = lanes
