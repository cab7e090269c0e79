"""The event pipeline's core: pure and synchronous, no sockets, threads or event loop (Sans-I/O).

It is told what happens — an envelope arrived, the ledger answered an admission, an interaction's listener
returned its ack payload, an event's work is finished, time passed — and answers with actions for its
driver (`nonstop.pipeline.driver`) to carry out: `Ack` an envelope, `Start` an event's listeners, `Run` an
interaction. What it decides:

- **Events** are admitted to the ledger together, once per loop turn (`take_admissions`), and acked only
  once the ledger has them (`admitted`): an ack never leaves for an event that is not on record. New ones
  are started; duplicates (Slack's retries, the same event on another connection, one handled before a
  restart) are acked and suppressed.
- **Acks first**: an admitted event's listeners start once envelopes stop arriving for `start_when_quiet_s`
  (counted from when the turn's acks were written, `acks_written`), and at most `start_within_s` after the
  first of them was acked (`wake_at`, `due`). Listener threads
  compete with the loop that reads and acks for the GIL; a burst is acked at the loop's pace, then run
  (docs/decisions.md).
- **Backpressure**: at most `max_backlog` events in progress (arriving, being admitted, running, or
  waiting to run again after a restart). Past it, new events are left unacked for Slack to retry later
  (or on another replica) instead of piling up here.
- **Interactions** (slash commands, block actions, views) are not recorded (Slack never redelivers them):
  they `Run` at once, even while stopping (a user waits, and the links are still open), and are acked
  with what their listener returns. A copy of one that arrives anyway is acked like the first.
- **Replays** (events an earlier run acked and never finished) start as the backlog allows.
- **Recovered** events (`recover`: what catch-up found in history, come by no link) take the same admission,
  dedupe, backlog and start as delivered ones, and are never acked.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop.ledger.base import Entry
from nonstop.pipeline.actions import Ack, Action, Arrival, Observer, Run, Start
from nonstop.pipeline.dedup import TTLCache
from nonstop.pipeline.envelopes import EVENTS_API, event_key, is_recovered, key_label, kind_of, parse_request

__all__ = [
    "START_WHEN_QUIET_S",
    "START_WITHIN_S",
    "Ack",
    "Action",
    "Arrival",
    "EventPipeline",
    "Observer",
    "Run",
    "Start",
]

log = logging.getLogger("nonstop.pipeline")

START_WHEN_QUIET_S = 0.005
START_WITHIN_S = 0.5


@dataclass
class _Interaction:
    """An interaction being handled, then the payload it was acked with."""

    payload: dict[str, Any] | None = None
    done: bool = False


class EventPipeline:
    """Args:
    max_backlog: events in progress at most; past it, new events are left unacked.
    dedup_ttl_s: how long a copy of an interaction is recognised.
    durable: whether the ledger keeps events across a restart (then a stop leaves events that have not
        started on record instead of starting them into the drain deadline).
    observer: where counts go.
    """

    def __init__(
        self,
        *,
        max_backlog: int,
        dedup_ttl_s: float,
        durable: bool,
        observer: Observer,
        start_when_quiet_s: float = START_WHEN_QUIET_S,
        start_within_s: float = START_WITHIN_S,
    ) -> None:
        self._max_backlog = max_backlog
        self._durable = durable
        self._observe = observer
        self._quiet_s = start_when_quiet_s
        self._within_s = start_within_s
        self._interactions: TTLCache[_Interaction] = TTLCache(dedup_ttl_s)
        self._arrivals: list[Arrival] = []  # this turn's events, admitted together at its end
        self._admitting = 0  # events of earlier turns whose admission the ledger has not answered yet
        self._running: set[str] = set()  # started (or acked and held back), not finished
        self._held: list[Start] = []  # acked, listeners not started yet (acks first)
        self._first_held_at = 0.0
        self._last_held_at = 0.0
        self._replays: deque[Start] = deque()  # to run again, as the backlog allows
        self._finished: list[str] = []  # finished, not yet recorded
        self._saturated = False
        self.accepting = True
        observer.set_backlog(0, max_backlog)

    # -- what happens ------------------------------------------------------------------------------

    def receive(self, via: Any, message: dict[str, Any], text: str | None, received_at: float) -> list[Action]:
        """An envelope came in on link `via` (`text`: as it came off the wire, stored as is)."""
        kind = kind_of(message)
        envelope_id = message.get("envelope_id")
        if "type" not in message or "payload" not in message:
            # Not an envelope: Slack sends none without both. An echo of our own ack (`{"envelope_id": …}`, as
            # Bolt's test server sends back) must never be acked, or each ack would bring the next echo.
            log.debug("ignored a frame that is not an envelope (no type or no payload; envelope_id=%r)", envelope_id)
            self._observe.envelope(kind, "ignored")
            return []
        if not isinstance(envelope_id, str) or not envelope_id:
            log.warning("ignored a frame with no usable envelope_id (type=%r)", message.get("type"))
            self._observe.envelope(kind, "malformed")
            return []
        self._observe.envelope(kind, "received")
        request = parse_request(message)
        if request is None:
            log.error(
                "acked malformed envelope %s (type=%r, payload: %s): it cannot be handled",
                envelope_id,
                message.get("type"),
                type(message["payload"]).__name__,
                extra={"envelope_id": envelope_id},
            )
            self._observe.envelope(kind, "malformed")
            return [Ack(via, envelope_id, None, kind, received_at)]
        if request.type != EVENTS_API:
            return self._interaction(via, request, kind, received_at)
        if not self.accepting:
            # Unacked, Slack redelivers it to a connection that is staying (or to another replica).
            log.info("stopping: left envelope %s unacked for Slack to redeliver", envelope_id)
            self._observe.envelope(kind, "refused_stopping")
            return []
        if self.in_progress >= self._max_backlog:
            self._observe.envelope(kind, "refused_saturated")
            if not self._saturated:
                self._saturated = True
                log.warning(
                    "backlog full (%d events in progress, NONSTOP_MAX_BACKLOG=%d): new events are left unacked "
                    "for Slack to retry until it drains",
                    self.in_progress,
                    self._max_backlog,
                )
            return []
        self._arrivals.append(Arrival(via, event_key(request), request, message, received_at, text))
        return []

    def take_admissions(self) -> list[Arrival]:
        """The events that arrived since the last call: to be admitted to the ledger, then `admitted` (or
        `not_admitted`, exactly one of the two, whatever happens)."""
        batch, self._arrivals = self._arrivals, []
        self._admitting += len(batch)
        return batch

    def admitted(self, batch: list[Arrival], fresh: list[bool], now: float) -> list[Action]:
        """The ledger recorded `batch`; `fresh[i]` says whether `batch[i]` was new to it."""
        self._admitting -= len(batch)
        actions: list[Action] = []
        starts: list[Start] = []
        for arrival, new in zip(batch, fresh, strict=True):
            if not arrival.recovered:
                actions.append(Ack(arrival.via, arrival.request.envelope_id, None, EVENTS_API, arrival.received_at))
            if new:
                self._running.add(arrival.key)
                starts.append(Start(arrival.key, arrival.request, recovered=arrival.recovered))
                if arrival.recovered:
                    self._observe.envelope(EVENTS_API, "recovered")
            else:
                self._duplicate(arrival)
        if starts:
            self._observe.set_backlog(self.backlog, self._max_backlog)
            if self.accepting:
                if not self._held:
                    self._first_held_at = now
                self._held.extend(starts)
                self._last_held_at = now
            elif not self._durable:  # stopping, and nothing keeps them: run them in the drain
                actions.extend(starts)
        return actions

    def acks_written(self, now: float) -> None:
        """The turn's acks are written: the quiet that starts held listeners counts from `now`, since the loop
        read nothing while it built and wrote them (a collection or a wait for the GIL there used to count as
        quiet, and started listeners in the middle of a burst)."""
        if self._held:
            self._last_held_at = max(self._last_held_at, now)

    def not_admitted(self, batch: list[Arrival]) -> None:
        """The ledger could not record `batch`: not acked, so Slack retries them (catch-up, those it found) and
        nothing is lost."""
        self._admitting -= len(batch)
        for arrival in batch:
            self._observe.envelope(EVENTS_API, "recovered_refused" if arrival.recovered else "refused_ledger")

    def recover(self, message: dict[str, Any], received_at: float) -> Arrival | str:
        """An Events API envelope that came by no link (catch-up found its message in history): an `Arrival`
        for the caller to admit to the ledger now, then `admitted` or `not_admitted` (it is counted as in
        progress meanwhile); or already the outcome: "duplicate" (it is running here) or "refused" (stopping,
        or the backlog is full: catch-up tries it again at its next scan). Raises `ValueError` for an envelope
        that is not an Events API one."""
        request = parse_request(message)
        if request is None or request.type != EVENTS_API or not request.envelope_id:
            raise ValueError(f"not an Events API envelope (type={message.get('type')!r}): it cannot be injected")
        key = event_key(request)
        if key in self._running:
            self._observe.envelope(EVENTS_API, "recovered_duplicate")
            return "duplicate"
        if not self.accepting or self.in_progress >= self._max_backlog:
            self._observe.envelope(EVENTS_API, "recovered_refused")
            return "refused"
        self._admitting += 1
        return Arrival(None, key, request, message, received_at, None, recovered=True)

    @property
    def wake_at(self) -> float | None:
        """When the held-back events are due to start (`due`); None when none are held."""
        if not self._held:
            return None
        return min(self._last_held_at + self._quiet_s, self._first_held_at + self._within_s)

    def due(self, now: float) -> list[Start]:
        """The held-back events whose time has come (all of them, or none)."""
        wake = self.wake_at
        if wake is None or now < wake:
            return []
        starts, self._held = self._held, []
        return starts

    def interaction_done(self, run: Run, payload: dict[str, Any] | None) -> list[Action]:
        """An interaction's listener returned: ack it with `payload` (the reply, if any)."""
        pending = self._interactions.get(_interaction_key(run.request))
        if pending is not None:
            pending.payload, pending.done = payload, True
        return [Ack(run.via, run.request.envelope_id, payload, run.kind, run.received_at)]

    def finished(self, key: str) -> list[Action]:
        """Every listener the event `key` started has returned: record it, and start what was waiting for room."""
        self._running.discard(key)
        self._finished.append(key)
        if self._saturated and self.in_progress < self._max_backlog:
            self._saturated = False
            log.info("backlog below NONSTOP_MAX_BACKLOG again (%d events in progress)", self.in_progress)
        actions: list[Action] = list(self._start_replays())
        self._observe.set_backlog(self.backlog, self._max_backlog)
        return actions

    def take_finished(self) -> list[str]:
        """The events finished since the last call: to be marked done in the ledger."""
        keys, self._finished = self._finished, []
        return keys

    def replay(self, entries: list[Entry]) -> list[Action]:
        """Run again the events an earlier run (or a replica that died) acked and never finished."""
        queued = {start.key for start in self._replays}
        for entry in entries:
            if entry.key in self._running or entry.key in queued:
                continue  # already running (or about to) here
            request = parse_request(entry.envelope)
            if request is None:
                log.error(
                    "event %s cannot run again: its stored envelope is not one Slack sends (no type or no "
                    "payload object); marking it done so that it does not come back at every start",
                    key_label(entry.key),
                    extra={"event_id": key_label(entry.key)},
                )
                self._observe.envelope(EVENTS_API, "unreadable")
                self._finished.append(entry.key)
                continue
            self._replays.append(Start(entry.key, request, max(1, entry.runs), is_recovered(entry.envelope)))
            queued.add(entry.key)
        return list(self._start_replays())

    def stop_accepting(self) -> list[Action]:
        """Take no new events. Those acked and held back start now with a ledger that forgets them
        (`memory://`); a durable one keeps them for the next start (or another replica), so the drain
        deadline is spent on work already under way and none is cut off half-way."""
        self.accepting = False
        held, self._held = self._held, []
        return [] if self._durable else list(held)

    # -- what is in progress -----------------------------------------------------------------------

    @property
    def in_progress(self) -> int:
        """Events counted against `max_backlog`: arriving, being admitted, running, or queued to run again."""
        return len(self._running) + len(self._replays) + self._admitting + len(self._arrivals)

    @property
    def backlog(self) -> int:
        """Events acked (or replayed) and not finished."""
        return len(self._running) + len(self._replays)

    @property
    def durable(self) -> bool:
        """Whether the ledger keeps events across a restart (see `stop_accepting`)."""
        return self._durable

    @property
    def has_arrivals(self) -> bool:
        return bool(self._arrivals)

    def unfinished(self) -> list[str]:
        """Keys of the events acked here and not finished (started, held back, or queued to run again)."""
        return sorted(self._running | {start.key for start in self._replays})

    # -- helpers -----------------------------------------------------------------------------------

    def _start_replays(self) -> list[Start]:
        starts: list[Start] = []
        while self._replays and len(self._running) < self._max_backlog and self.accepting:
            start = self._replays.popleft()
            self._running.add(start.key)
            starts.append(start)
        return starts

    def _duplicate(self, arrival: Arrival) -> None:
        request = arrival.request
        if arrival.recovered:  # catch-up finding what was handled already is its normal case: no log line
            self._observe.envelope(EVENTS_API, "recovered_duplicate")
            return
        self._observe.duplicate()
        self._observe.envelope(EVENTS_API, "duplicate")
        event_id = request.payload.get("event_id")
        label = key_label(arrival.key)
        log.info(
            "suppressed a duplicate delivery of %s (retry_attempt=%s, retry_reason=%s)",
            f"{event_id} ({label})" if event_id and label != event_id else label,
            request.retry_attempt,
            request.retry_reason or "-",
            extra={
                "envelope_id": request.envelope_id,
                "event_id": event_id,
                "retry_attempt": request.retry_attempt,
            },
        )

    def _interaction(self, via: Any, request: SocketModeRequest, kind: str, received_at: float) -> list[Action]:
        key = _interaction_key(request)
        pending = self._interactions.get(key)
        if pending is None:
            self._interactions.put(key, _Interaction())
            return [Run(via, request, kind, received_at)]
        self._observe.duplicate()
        self._observe.envelope(kind, "duplicate")
        log.info(
            "suppressed a duplicate delivery of envelope %s (%s)",
            request.envelope_id,
            request.type,
            extra={"envelope_id": request.envelope_id, "retry_attempt": request.retry_attempt},
        )
        # Slack does not redeliver interactions; a copy that arrives anyway is acked like the first, or left
        # to the first's ack while it is still being handled.
        return [Ack(via, request.envelope_id, pending.payload, kind, received_at)] if pending.done else []


def _interaction_key(request: SocketModeRequest) -> str:
    return f"envelope:{request.envelope_id}"
