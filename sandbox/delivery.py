"""Routing envelopes to live connections, matching acks, retrying unacknowledged events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox import payloads
from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.recorder import Recorder
from sandbox.records import Attempt, DeliveryRecord
from sandbox.socket import SocketHub, WsConnection


class Dispatcher:
    """Runs on the loop thread. One DeliveryRecord per logical delivery, one Attempt per envelope."""

    def __init__(self, config: SandboxConfig, recorder: Recorder, faults: Faults, hub: SocketHub) -> None:
        self.config = config
        self.recorder = recorder
        self.faults = faults
        self.hub = hub
        self._rr = 0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        hub.on_ack = self.on_ack

    def _pick(self, avoid: str | None) -> WsConnection | None:
        candidates = self.hub.routable()
        if not candidates:
            return None
        conn = candidates[self._rr % len(candidates)]
        self._rr += 1
        if avoid is not None and len(candidates) > 1 and conn.info is not None and conn.info.id == avoid:
            conn = candidates[self._rr % len(candidates)]
            self._rr += 1
        return conn

    def start(self, record: DeliveryRecord) -> str | None:
        """Register a delivery and send its first attempt. Returns the first envelope_id (None: no connection)."""
        with self.recorder.lock:
            self.recorder.deliveries[record.key] = record
        return self._attempt(record, 0)

    def _envelope(self, record: DeliveryRecord, retry_attempt: int, envelope_id: str) -> dict[str, Any]:
        if record.kind == "events_api":
            return payloads.events_api_envelope(record.envelope["payload"], retry_attempt, envelope_id)
        return {**record.envelope, "envelope_id": envelope_id}

    def _attempt(self, record: DeliveryRecord, retry_attempt: int) -> str | None:
        if record.outcome != "pending":
            return None
        previous = record.attempts[-1].connection_id if record.attempts else None
        conn = self._pick(previous)
        envelope_id = payloads.new_envelope_id()
        now = time.monotonic()
        conn_id = conn.info.id if conn is not None and conn.info is not None else None
        with self.recorder.lock:
            record.attempts.append(Attempt(envelope_id, conn_id, now, retry_attempt))
            if conn is not None:
                self.recorder.by_envelope[envelope_id] = record
                if conn.info is not None:
                    conn.info.envelopes_sent += 1
        if conn is not None:
            conn.send_json(self._envelope(record, retry_attempt, envelope_id))
            self._schedule(record, self.config.ack_deadline_s, lambda: self._deadline(record, retry_attempt))
        else:
            self._failed(record, retry_attempt)
        self.recorder.changed()
        return envelope_id if conn is not None else None

    def _schedule(self, record: DeliveryRecord, delay: float, fn: Any) -> None:
        loop = asyncio.get_running_loop()
        self._timers[record.key] = loop.call_later(delay, fn)

    def _failed(self, record: DeliveryRecord, retry_attempt: int) -> None:
        """The attempt could not be sent (or was not acked in time): retry or give up."""
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

    def _deadline(self, record: DeliveryRecord, retry_attempt: int) -> None:
        if record.outcome == "pending":
            self._failed(record, retry_attempt)
            self.recorder.changed()

    def _finish(self, record: DeliveryRecord, outcome: str) -> None:
        timer = self._timers.pop(record.key, None)
        if timer is not None:
            timer.cancel()
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
        if self.faults.take_lost_ack():
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
