"""Read-only views of the process's health: what `Telemetry.snapshot()` hands to status, health and metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nonstop.status.state import State

__all__ = ["CATCH_UP_MODES", "CatchUpView", "ClusterView", "Drop", "LinksView", "Replica", "Snapshot"]


@dataclass(frozen=True)
class Drop:
    """One connection that went away, explained."""

    at: float  # wall-clock time (time.time())
    cause: str  # short, bounded label: "reset", "half_open", "refresh", "server_close", ...
    explanation: str  # one sentence for humans, e.g. "1006 abnormal closure: no close frame, the link just died"
    connection_age_s: float
    close_code: int | None = None  # the WebSocket close code, when there was a close frame


@dataclass(frozen=True)
class Replica:
    """One replica of the bot as the cluster's membership sees it."""

    name: str
    connections: int  # links it holds (open or being opened) out of the cluster's budget
    started_at: float  # wall-clock time
    events_handled: int
    this_one: bool = False


@dataclass(frozen=True)
class ClusterView:
    """The replicas sharing one Redis ledger and Slack's connection budget (`None` when running alone)."""

    replicas: tuple[Replica, ...]
    budget: int  # Slack's connections per app, shared by every replica
    allowed: int  # connections this replica may hold now (0: a standby)
    redis_reachable: bool
    ghost_connections: int = 0  # connections Slack counts that no replica holds (hello's num_connections)

    @property
    def total(self) -> int:
        return sum(r.connections for r in self.replicas)

    @property
    def standby(self) -> bool:
        return self.allowed == 0


CATCH_UP_MODES = ("starting", "periodic", "polling", "standby", "off")
"""What catch-up does: periodic scans while links are live, polling while none is, standby while another replica
scans, off (and why, in `reason`)."""


@dataclass(frozen=True)
class CatchUpView:
    """Catch-up as status shows it (nonstop/catchup/)."""

    mode: str  # one of CATCH_UP_MODES
    reason: str = ""  # why it is off, in words
    last_scan_at: float | None = None  # wall-clock time the latest complete scan ended
    recovered: int = 0  # mentions found in history and run (not run before)
    scans: int = 0
    failed_scans: int = 0


@dataclass(frozen=True)
class LinksView:
    """What the link pool holds at one moment, as it publishes it (read from any thread)."""

    target: int = 0  # links wanted now: NONSTOP_CONNECTIONS, or this replica's share of Slack's budget
    live: int = 0  # open and heard from
    suspect: int = 0  # silent for a while: replaced, kept until known dead or heard from again
    spare: int = 0  # live links beyond the target, held while Slack counts dead ones
    attempting: bool = False  # a connection attempt is under way
    retry_at: float | None = None  # monotonic time of the next attempt, while the gate holds attempts off
    slack_counted: int | None = None  # num_connections in the latest hello
    unaccounted: int = 0  # connections Slack counted at that hello that this process does not hold
    own_dead: int = 0  # of those, links of this process that died silently (Slack may still route events there)
    refused: bool = False  # Slack refused the latest attempt (too_many_websockets); no link connected since
    limit: int = 10  # Slack's budget of connections per app


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
    stale_after_s: float = math.inf  # the supervisor's limit for links (readiness too); inf until it says
    state_detail: str = ""  # e.g. "1 of 2 connections", "token_revoked", "next attempt in 4.2 s"
    backlog: int = 0  # events acked and not yet finished
    backlog_limit: int | None = None  # None until the pipeline says
    cluster: ClusterView | None = None
    spare_connections: int = 0  # live links held beyond the target while Slack counts dead ones
    suspect_connections: int = 0  # links silent for a while: replaced, kept until known dead or heard again
    slack_reported_connections: int | None = None  # num_connections in the latest hello
    slack_refusing: bool = False  # Slack refused the latest connection attempt (too_many_websockets)
    catch_up: CatchUpView | None = None  # None: no supervisor has said (a handler without catch-up)

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
        if self.cluster is not None and self.cluster.standby and self.state not in (State.STOPPING, State.FATAL):
            return None  # a standby is healthy and deliberate: it waits for a share of Slack's budget
        if self.state in (State.STOPPING, State.FATAL) or self.live_connections == 0:
            return self.state_text
        if self.last_inbound_at is None:
            return "stale: no frame from Slack yet"
        age = self.now - self.last_inbound_at
        if age > self.stale_after_s:
            return f"stale: no frame from Slack for {age:.1f}s (limit {self.stale_after_s:g}s)"
        if self.backlog_limit is not None and self.backlog >= self.backlog_limit:
            return f"saturated: {self.backlog} events in progress (NONSTOP_MAX_BACKLOG={self.backlog_limit})"
        return None
