"""Routing envelopes to connections, matching acks, retrying unacknowledged events.

The model, with its sources (docs/sandbox-model.md lists every modelled behaviour):
- An attempt goes to a connection "Slack" believes can take envelopes: hello sent, no disconnect sent,
  including a silent (half-open) one it has not noticed yet [DOC: "each payload may be sent to any of
  the connections"; OBS: python-slack-sdk #1940, payloads routed to ghost connections are lost].
- First attempts rotate round-robin over those connections [OBS-3p: sf8193/hydra #65 saw round-robin].
- Retries go to one of them chosen at random (seeded), with no memory of where the last attempt went,
  dead ones included [DOC: "any of the connections"; OBS-3p: bolt-python #448/#579, "one connection at
  random"]. Random, not round-robin, so that a retry's fate depends only on the share of live
  connections, not on the traffic in between.
- An attempt that finds no routable connection is held until one is (a bot reconnecting) or until the
  attempt's ack deadline, whichever comes first; one deadline covers waiting and acking, as an HTTP
  delivery's timeout covers connecting and answering [INF: Slack documents neither; failing at once made
  the "immediate" retry run in the same instant, so a bot reconnecting in milliseconds still lost 60 s].
- Acks are matched by envelope_id on any connection [EXP]; a late ack for any attempt still counts.
- During a Slack-side incident (`Sandbox.incident`) new events are recorded in history and never sent,
  while the links stay up [OBS: Slack's February 2025 incident, events not delivered and not replayed;
  INF: that nothing at all arrives, and that events already under way keep their retries].
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from sandbox import payloads
from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.recorder import Recorder
from sandbox.records import Attempt, DeliveryRecord
from sandbox.socket import SocketHub, WsConnection


@dataclass(eq=False)
class _Held:
    record: DeliveryRecord
    index: int  # into record.attempts
    retry_attempt: int


class Router:
    """Runs on the loop thread. One DeliveryRecord per logical delivery, one Attempt per envelope."""

    def __init__(self, config: SandboxConfig, recorder: Recorder, faults: Faults, hub: SocketHub) -> None:
        self.config = config
        self.recorder = recorder
        self.faults = faults
        self.hub = hub
        self._rr = 0
        self._rng = random.Random(config.seed)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._held: list[_Held] = []
        hub.on_ack = self.on_ack
        hub.on_routable_change = self._send_held

    def _pick(self, retry_attempt: int) -> WsConnection | None:
        candidates = self.hub.routable()
        if not candidates:
            return None
        if retry_attempt > 0:
            return self._rng.choice(candidates)
        conn = candidates[self._rr % len(candidates)]
        self._rr += 1
        return conn

    def start(self, record: DeliveryRecord) -> str | None:
        """Register a delivery and begin its first attempt. Returns the first envelope_id, or None for an
        event that a Slack-side incident drops (`Faults.incident`): never sent, never retried."""
        with self.recorder.lock:
            self.recorder.deliveries[record.key] = record
        if self.faults.incident and record.kind == "events_api":
            self._finish(record, "dropped")
            self.recorder.changed()
            return None
        return self._attempt(record, 0)

    def _envelope(self, record: DeliveryRecord, retry_attempt: int, envelope_id: str) -> dict[str, Any]:
        if record.kind == "events_api":
            return payloads.events_api_envelope(record.envelope["payload"], retry_attempt, envelope_id)
        return {**record.envelope, "envelope_id": envelope_id}

    def _attempt(self, record: DeliveryRecord, retry_attempt: int) -> str:
        envelope_id = payloads.new_envelope_id()
        if record.outcome != "pending":
            return envelope_id
        now = time.monotonic()
        with self.recorder.lock:
            record.attempts.append(Attempt(envelope_id, None, now, retry_attempt, now))
            self.recorder.by_envelope[envelope_id] = record
        held = _Held(record, len(record.attempts) - 1, retry_attempt)
        self._schedule(record, self.config.ack_deadline_s, lambda: self._deadline(held))
        conn = self._pick(retry_attempt)
        if conn is None:
            self._held.append(held)
        else:
            self._send(held, conn)
        self.recorder.changed()
        return envelope_id

    def _send(self, held: _Held, conn: WsConnection) -> None:
        record = held.record
        attempt = record.attempts[held.index]
        with self.recorder.lock:
            record.attempts[held.index] = attempt._replace(
                connection_id=conn.info.id if conn.info is not None else None, sent_at=time.monotonic()
            )
            if conn.info is not None:
                conn.info.envelopes_sent += 1
        conn.send_json(self._envelope(record, held.retry_attempt, attempt.envelope_id))

    def _send_held(self) -> None:
        """A connection became routable (or stopped being so): send what waits for one, oldest first."""
        while self._held:
            conn = self._pick(self._held[0].retry_attempt)
            if conn is None:
                return
            self._send(self._held.pop(0), conn)
        self.recorder.changed()

    def _schedule(self, record: DeliveryRecord, delay: float, fn: Any) -> None:
        loop = asyncio.get_running_loop()
        self._timers[record.key] = loop.call_later(delay, fn)

    def _deadline(self, held: _Held) -> None:
        if held in self._held:
            self._held.remove(held)
        record = held.record
        if record.outcome != "pending":
            return
        self._failed(record, held.retry_attempt)
        self.recorder.changed()

    def _failed(self, record: DeliveryRecord, retry_attempt: int) -> None:
        """The attempt was not acked in time (or never found a connection): retry or give up."""
        if record.kind != "events_api":
            self._finish(record, "dispatch_failed" if not self._was_sent(record) else "timeout")
            return
        if retry_attempt >= len(self.config.retry_delays_s):
            self._finish(record, "exhausted")
            return
        delay = self.config.retry_delays_s[retry_attempt]
        self._schedule(record, delay, lambda: self._attempt(record, retry_attempt + 1))

    @staticmethod
    def _was_sent(record: DeliveryRecord) -> bool:
        return any(a.connection_id is not None for a in record.attempts)

    def _finish(self, record: DeliveryRecord, outcome: str) -> None:
        timer = self._timers.pop(record.key, None)
        if timer is not None:
            timer.cancel()
        self._held = [h for h in self._held if h.record is not record]
        with self.recorder.lock:
            record.outcome = outcome
            record.finished_at = time.monotonic()

    def on_ack(self, conn: WsConnection, message: dict[str, Any]) -> None:
        envelope_id = message["envelope_id"]
        now = time.monotonic()
        with self.recorder.lock:
            record = self.recorder.by_envelope.get(envelope_id)
            if conn.info is not None:
                conn.info.acks_received += 1
        if record is None:
            if conn.info is not None:
                with self.recorder.lock:
                    conn.info.other_messages.append(f"ack for unknown envelope {envelope_id}")
            self.recorder.changed()
            return
        first = bool(record.attempts) and record.attempts[0].envelope_id == envelope_id
        if self.faults.take_lost_ack(first and record.acked_at is None):
            with self.recorder.lock:
                record.acks_lost += 1
            self.recorder.changed()
            return
        if record.acked_at is not None:
            with self.recorder.lock:
                record.duplicate_acks += 1
            self.recorder.changed()
            return
        payload = message.get("payload")
        with self.recorder.lock:
            record.acked_at = now
            record.ack_envelope_id = envelope_id
            record.ack_connection_id = conn.info.id if conn.info is not None else None
            record.ack_payload = payload if isinstance(payload, dict) and payload else None
        if record.outcome in ("pending", "exhausted"):
            self._finish(record, "acked")
        self.recorder.changed()

    def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._held.clear()
