"""From envelope to Bolt and back: ack every delivery, run the handlers once per event.

- `events_api` envelopes are acked the moment they arrive (Bolt would ack them unconditionally
  before running the listener anyway); the ack no longer waits behind a busy thread pool, which is
  what makes Slack retry and users see double replies under load.
- Slash commands and interactive payloads are acked with what Bolt's listener returns (the ack can
  carry the reply), exactly as Bolt's own `send_response` builds it.
- Duplicates (Slack's retries, the same event on another connection) are acked and suppressed:
  events by `event_id`, everything else by `envelope_id`. A retry whose first attempt never reached
  this process is new here, and is handled.
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
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from nonstop.dedup import TTLCache
from nonstop.telemetry import Telemetry

log = logging.getLogger("nonstop.dispatch")


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
"""send_ack(link_it_came_on, envelope_id, payload_or_None, kind, received_at), on the event-loop thread."""


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


def parse_request(message: dict[str, Any]) -> SocketModeRequest | None:
    """The envelope as slack_sdk's request type, or None when it cannot be handled: no type, or a
    payload that is not a JSON object (slack_sdk would raise on some of those, or invent a dict)."""
    if not isinstance(message.get("type"), str) or not isinstance(message.get("payload"), dict):
        return None
    try:
        return SocketModeRequest.from_dict(message)
    except (TypeError, ValueError):
        return None


class Dispatcher:
    def __init__(
        self,
        app: App,
        *,
        send_ack: AckSender,
        call_soon: Callable[[Callable[[], None]], None],
        telemetry: Telemetry,
        dedup_ttl_s: float,
        workers: int = 4,  # Bolt's dispatch of an event is short; more threads only fight the ack loop
        handler_nice: int = 0,
        failure_reply: FailureReply | None = None,
    ) -> None:
        self._app = app
        self._send_ack = send_ack
        self._call_soon = call_soon  # runs a callback on the event-loop thread
        self._failure_reply = failure_reply
        self._telemetry = telemetry
        self._seen: TTLCache[_Pending | None] = TTLCache(dedup_ttl_s)
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="nonstop-dispatch", initializer=lower_priority(handler_nice)
        )
        self._in_flight = 0
        self._handover: list[tuple[SocketModeRequest, Callable[[dict[str, Any] | None], None] | None]] = []
        self._lock = threading.Lock()
        self.accepting = True

    # -- on the event-loop thread --------------------------------------------------------------------

    def on_envelope(self, link: object, message: dict[str, Any]) -> None:
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
            self._on_event(link, request, received_at)
        else:
            self._on_interaction(link, request, kind, received_at)

    def _on_event(self, link: object, request: SocketModeRequest, received_at: float) -> None:
        self._send_ack(link, request.envelope_id, None, "events_api", received_at)
        event_id = request.payload.get("event_id")
        key = f"event:{event_id}" if isinstance(event_id, str) and event_id else f"envelope:{request.envelope_id}"
        if key in self._seen:
            self._telemetry.duplicate()
            self._telemetry.envelope("events_api", "duplicate")
            log.info(
                "suppressed a duplicate delivery of %s (retry_attempt=%s, retry_reason=%s)",
                key.split(":", 1)[1],
                request.retry_attempt,
                request.retry_reason or "-",
                extra={
                    "envelope_id": request.envelope_id,
                    "event_id": event_id if isinstance(event_id, str) else None,
                    "retry_attempt": request.retry_attempt,
                },
            )
            return
        self._seen.put(key, None)
        self._submit(request, on_done=None)

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

        self._submit(request, on_done=acked)

    def _submit(self, request: SocketModeRequest, on_done: Callable[[dict[str, Any] | None], None] | None) -> None:
        with self._lock:
            self._in_flight += 1
        # Hand over at the end of this loop turn, all at once: every ack for the frames just read
        # leaves first, and Bolt's threads do not wake (and compete for the GIL) once per envelope.
        if not self._handover:
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._handover.append((request, on_done))

    def _hand_over(self) -> None:
        batch, self._handover = self._handover, []
        for request, on_done in batch:
            try:
                self._pool.submit(self._run, request, on_done)
            except RuntimeError:  # pool shut down while stopping
                with self._lock:
                    self._in_flight -= 1
                log.info("stopping: envelope %s not handled", request.envelope_id)

    # -- on a dispatch thread ------------------------------------------------------------------------

    def _run(self, request: SocketModeRequest, on_done: Callable[[dict[str, Any] | None], None] | None) -> None:
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
            if on_done is not None:
                result = payload
                self._call_soon(lambda: on_done(result))

    # -- stopping ------------------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """On the event-loop thread: take no new envelopes, and hand over the ones already acked."""
        self.accepting = False
        self._hand_over()

    def drain(self, timeout_s: float, listener_executor: Executor | None) -> bool:
        """After `stop_accepting()`, wait (bounded) for in-flight handlers. True if all finished."""
        finished = threading.Event()

        def wait_all() -> None:
            self._pool.shutdown(wait=True)
            if listener_executor is not None:
                listener_executor.shutdown(wait=True)
            finished.set()

        threading.Thread(target=wait_all, name="nonstop-drain", daemon=True).start()
        return finished.wait(timeout_s)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight
