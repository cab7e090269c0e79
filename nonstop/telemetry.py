"""What the process knows about its own link to Slack: one home for the numbers.

The supervisor writes here; the `status` listeners, the health endpoints and the metrics read a
consistent `Snapshot`. Everything is guarded by one lock and cheap to update, so the Socket Mode
path never waits on a reader.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from nonstop.metrics import Metrics
from nonstop.settings import SupervisorSettings
from nonstop.state import State


@dataclass(frozen=True)
class Drop:
    """One connection that went away, explained."""

    at: float  # wall-clock time (time.time())
    cause: str  # short, bounded label: "reset", "half_open", "refresh", "server_close", ...
    explanation: str  # one sentence for humans, e.g. "1006 abnormal closure: no close frame, the link just died"
    connection_age_s: float
    close_code: int | None = None  # the WebSocket close code, when there was a close frame


@dataclass(frozen=True)
class Snapshot:
    """A consistent, read-only view of the link's health at one moment."""

    started_at: float
    now: float
    live_connections: int
    target_connections: int
    connected_since: float | None  # since when at least one connection has been live without a gap
    last_inbound_at: float | None  # monotonic-free wall time of the freshest inbound frame on any link
    reconnects_by_cause: dict[str, int]
    last_drop: Drop | None
    envelopes_handled: int
    duplicates_suppressed: int
    state: State
    last_rtt_ms: float | None  # round trip of the latest WebSocket ping
    last_beat_at: float | None  # when the supervisor loop last proved it is alive
    stale_after_s: float = SupervisorSettings.stale_after_s  # the supervisor's limit for links (readiness too)
    state_detail: str = ""  # e.g. "1 of 2 connections", "token_revoked", "next attempt in 4.2 s"
    backlog: int = 0  # events acked and not yet finished
    backlog_limit: int = SupervisorSettings.max_backlog
    spare_connections: int = 0  # live links held beyond the target while Slack counts dead ones
    suspect_connections: int = 0  # links silent for a while: replaced, kept until known dead or heard again
    slack_reported_connections: int | None = None  # num_connections in the latest hello

    @property
    def state_text(self) -> str:
        """The state in words, for people: "degraded: 1 of 2 connections", "fatal: token_revoked"."""
        return f"{self.state}: {self.state_detail}" if self.state_detail else str(self.state)

    @property
    def uptime_s(self) -> float:
        return max(0.0, self.now - self.started_at)

    @property
    def reconnects(self) -> int:
        return sum(self.reconnects_by_cause.values())

    @property
    def not_ready_reason(self) -> str | None:
        """Why the bot is not ready (see /readyz), or None: a live connection heard from within `stale_after_s`."""
        if self.state in (State.STOPPING, State.FATAL) or self.live_connections == 0:
            return self.state_text
        age = self.now - self.last_inbound_at if self.last_inbound_at is not None else float("inf")
        if age > self.stale_after_s:
            return f"stale: no frame from Slack for {age:.1f}s (limit {self.stale_after_s:g}s)"
        if self.backlog >= self.backlog_limit:
            return f"saturated: {self.backlog} events in progress (NONSTOP_MAX_BACKLOG={self.backlog_limit})"
        return None


@dataclass
class Telemetry:
    """Mutable, thread-safe record of the link's health. One per process (see `TELEMETRY`)."""

    started_at: float = field(default_factory=time.time)
    target_connections: int = 1
    stale_after_s: float = SupervisorSettings.stale_after_s  # set by the supervisor from its settings
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _live: int = 0
    _connected_since: float | None = None
    _last_inbound_at: float | None = None
    _reconnects: Counter[str] = field(default_factory=Counter)
    _last_drop: Drop | None = None
    _handled: int = 0
    _duplicates: int = 0
    _state: State = State.STARTING
    _state_detail: str = ""
    _backlog: int = 0
    _backlog_limit: int = SupervisorSettings.max_backlog
    _last_rtt_ms: float | None = None
    _last_beat_at: float | None = None
    _spare: int = 0
    _suspect: int = 0
    _slack_reported: int | None = None

    def __post_init__(self) -> None:
        self.metrics.bind(self.snapshot)

    def connection_up(self) -> None:
        with self._lock:
            self._live += 1
            if self._connected_since is None:
                self._connected_since = time.time()

    def connection_down(self, drop: Drop) -> None:
        with self._lock:
            self._live = max(0, self._live - 1)
            self._reconnects[drop.cause] += 1
            self._last_drop = drop
            if self._live == 0:
                self._connected_since = None
        self.metrics.drop(drop.cause, drop.close_code)

    def inbound(self) -> None:
        now = time.time()
        with self._lock:
            self._last_inbound_at = now

    def rtt(self, ms: float) -> None:
        with self._lock:
            self._last_rtt_ms = ms

    def handled(self) -> None:
        with self._lock:
            self._handled += 1

    def duplicate(self) -> None:
        with self._lock:
            self._duplicates += 1

    def beat(self) -> None:
        now = time.time()
        with self._lock:
            self._last_beat_at = now

    # -- event hooks for metrics (bounded labels only: no ids, no user text) -------------------------

    def attempt(self, outcome: str) -> None:
        """One connection attempt ended: "ok", or why not ("network", "ratelimited", "connect_timeout", …)."""
        self.metrics.attempt(outcome)

    def envelope(self, kind: str, outcome: str) -> None:
        """An envelope of `kind` (events_api, slash_commands, interactive): received, duplicate, failed, …"""
        self.metrics.envelope(kind, outcome)

    def ack_sent(self, kind: str, latency_s: float) -> None:
        """An ack left for Slack `latency_s` after its envelope arrived."""
        self.metrics.ack_sent(kind, latency_s)

    def handler_done(self, kind: str, duration_s: float, ok: bool) -> None:
        """Bolt finished dispatching one envelope."""
        self.metrics.handler_done(kind, duration_s, ok)

    def web_api_call(self, method: str, outcome: str) -> None:
        """The bot made one Web API call: "ok", a Slack error code, "http_503", "timeout", "network", …"""
        self.metrics.web_api_call(method, outcome)

    def set_backlog(self, backlog: int, limit: int) -> None:
        with self._lock:
            self._backlog, self._backlog_limit = backlog, limit

    def links(self, *, spare: int, suspect: int, slack_reported: int | None) -> None:
        """What the supervisor holds beyond its target, and what Slack counted at the latest hello."""
        with self._lock:
            self._spare, self._suspect, self._slack_reported = spare, suspect, slack_reported

    def set_state(self, state: State, detail: str = "") -> None:
        with self._lock:
            self._state, self._state_detail = state, detail

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                started_at=self.started_at,
                now=time.time(),
                live_connections=self._live,
                target_connections=self.target_connections,
                connected_since=self._connected_since,
                last_inbound_at=self._last_inbound_at,
                reconnects_by_cause=dict(self._reconnects),
                last_drop=self._last_drop,
                envelopes_handled=self._handled,
                duplicates_suppressed=self._duplicates,
                state=self._state,
                state_detail=self._state_detail,
                backlog=self._backlog,
                backlog_limit=self._backlog_limit,
                last_rtt_ms=self._last_rtt_ms,
                last_beat_at=self._last_beat_at,
                stale_after_s=self.stale_after_s,
                spare_connections=self._spare,
                suspect_connections=self._suspect,
                slack_reported_connections=self._slack_reported,
            )


TELEMETRY = Telemetry()
"""The process-wide record, like prometheus_client's default registry: the supervisor writes it,
listeners and health endpoints read it."""
