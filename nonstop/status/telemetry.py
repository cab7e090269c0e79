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
from collections.abc import Callable
from dataclasses import dataclass, field

from nonstop.status.metrics import Metrics
from nonstop.status.reporter import Report
from nonstop.status.snapshot import CatchUpView, ClusterView, Drop, Snapshot
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
    _catch_up: CatchUpView | None = None
    _report: Callable[[], Report] | None = None

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

    @property
    def envelopes_handled(self) -> int:
        with self._lock:
            return self._handled

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

    def set_catch_up(self, view: CatchUpView | None) -> None:
        with self._lock:
            self._catch_up = view

    def set_state(self, state: State, detail: str = "") -> None:
        """The state to show while no reporter is bound (before the supervisor runs)."""
        with self._lock:
            self._state, self._state_detail = state, detail

    def bind_report(self, report: Callable[[], Report] | None) -> None:
        """Where snapshots take the state and the links' numbers from while the supervisor runs (None: unbind)."""
        self._report = report

    def snapshot(self) -> Snapshot:
        report = self._report() if self._report is not None else None  # outside the lock: it reads other parts
        with self._lock:
            if report is None:
                report = Report(self._state, self._state_detail, self.target_connections, 0, 0, None, self._cluster)
            return Snapshot(
                started_at=self.started_at,
                now=time.time(),
                live_connections=self._live,
                target_connections=report.target,
                connected_since=self._connected_since,
                last_inbound_at=self._last_inbound_at,
                reconnects_by_cause=dict(self._reconnects),
                last_drop=self._last_drop,
                envelopes_handled=self._handled,
                duplicates_suppressed=self._duplicates,
                state=report.state,
                state_detail=report.detail,
                backlog=self._backlog,
                backlog_limit=self._backlog_limit,
                last_rtt_ms=self._last_rtt_ms,
                last_beat_at=self._last_beat_at,
                stale_after_s=self.stale_after_s,
                cluster=report.cluster,
                spare_connections=report.spare,
                suspect_connections=report.suspect,
                slack_reported_connections=report.slack_reported,
                slack_refusing=report.refusing,
                catch_up=self._catch_up,
            )


TELEMETRY = Telemetry()
"""The process-wide record, like prometheus_client's default registry: the supervisor writes it,
listeners and health endpoints read it."""
