"""What the process knows about its own link to Slack: one home for the numbers.

The supervisor writes here; the `status` listeners, the health endpoints and the metrics read a
consistent `Snapshot`. Everything is guarded by one lock and cheap to update, so the Socket Mode
path never waits on a reader.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from nonstop.status.metrics import Metrics
from nonstop.status.snapshot import ClusterView, Drop, Snapshot
from nonstop.status.state import State


@dataclass
class Telemetry:
    """Mutable, thread-safe record of the link's health. One per process (see `TELEMETRY`)."""

    started_at: float = field(default_factory=time.time)
    target_connections: int = 1
    stale_after_s: float = math.inf  # set by the supervisor from its settings
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
    _backlog_limit: int | None = None
    _last_rtt_ms: float | None = None
    _last_beat_at: float | None = None
    _cluster: ClusterView | None = None
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

    def set_cluster(self, view: ClusterView | None) -> None:
        with self._lock:
            self._cluster = view

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
                cluster=self._cluster,
                spare_connections=self._spare,
                suspect_connections=self._suspect,
                slack_reported_connections=self._slack_reported,
            )


TELEMETRY = Telemetry()
"""The process-wide record, like prometheus_client's default registry: the supervisor writes it,
listeners and health endpoints read it."""
