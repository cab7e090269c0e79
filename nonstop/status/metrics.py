"""Prometheus metrics for the bot, in a registry of their own (not prometheus_client's global one).

`Telemetry` owns one `Metrics` and feeds it from its hooks; nothing else writes here. Updates are a
lock and an addition (prometheus_client's own), cheap enough for the Socket Mode event loop. Values
derived from the telemetry snapshot (seconds since the last inbound frame, uptime, state) are
computed when scraped, on the scraper's thread.

Every label value is bounded: fixed vocabularies (envelope types, drop causes), or short
machine-made codes (Slack error codes, Web API method names) squeezed through `_label`. No ids, no
user text, ever.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, StateSetMetricFamily
from prometheus_client.registry import Collector

from nonstop.status.snapshot import CATCH_UP_MODES
from nonstop.status.state import State

if TYPE_CHECKING:
    from nonstop.status.snapshot import CatchUpView, ClusterView, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENVELOPE_TYPES = frozenset({"events_api", "slash_commands", "interactive"})
STATES = tuple(State)

_LABEL = re.compile(r"^[A-Za-z0-9_.]{1,48}$")

# Slack's ack deadline is 3 s: resolve the sub-second range finely and stop soon after 3.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _label(value: object, fallback: str = "other") -> str:
    """A short code as a label value, or `fallback` when it does not look like one."""
    text = str(value) if value is not None else ""
    return text if _LABEL.match(text) else fallback


def envelope_type(kind: object) -> str:
    return kind if isinstance(kind, str) and kind in ENVELOPE_TYPES else "other"


def close_code(code: int | None) -> str:
    """A WebSocket close code as a label: 1000-4999, or "none"."""
    return str(code) if isinstance(code, int) and 1000 <= code <= 4999 else "none"


class Metrics:
    """The bot's metrics. One per `Telemetry`; `bind()` gives it the snapshot for scrape-time values."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Counter(
            "nonstop_connection_attempts",
            "Socket Mode connection attempts (ticket, handshake, hello) by outcome: ok, or why not.",
            ["outcome"],
            registry=r,
        )
        self.drops = Counter(
            "nonstop_connection_drops",
            "Live Socket Mode connections that ended, by cause (reset, half_open, refresh, server_close, …) "
            "and WebSocket close code (none when there was no close frame).",
            ["cause", "code"],
            registry=r,
        )
        self.envelopes = Counter(
            "nonstop_envelopes",
            "Socket Mode envelopes by type and outcome (received, acked, duplicate, failed, ack_failed, …).",
            ["type", "outcome"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "nonstop_handler_duration_seconds",
            "Time Bolt's dispatch took for one envelope, by type and outcome (ok, error): until the ack payload "
            "is known (Events API listeners carry on in Bolt's pool afterwards).",
            ["type", "outcome"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.ack_seconds = Histogram(
            "nonstop_ack_latency_seconds",
            "From an envelope's arrival to its ack leaving for Slack, by type. Slack's deadline is 3 s.",
            ["type"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.web_api = Counter(
            "nonstop_web_api_calls",
            "Web API calls made by the bot, by method and outcome (ok, a Slack error code, http_<status>, "
            "timeout, network).",
            ["method", "outcome"],
            registry=r,
        )
        ProcessCollector(registry=r)  # process_start_time_seconds, CPU, memory, open fds (Linux)
        self._scraped = _SnapshotCollector()
        r.register(self._scraped)

    def bind(self, snapshot: Callable[[], Snapshot]) -> None:
        """Where scrape-time values come from (the owning `Telemetry.snapshot`)."""
        self._scraped.snapshot = snapshot

    # -- feeding (called by Telemetry's hooks) -------------------------------------------------------

    def attempt(self, outcome: str) -> None:
        self.attempts.labels(_label(outcome)).inc()

    def drop(self, cause: str, code: int | None) -> None:
        self.drops.labels(_label(cause), close_code(code)).inc()

    def envelope(self, kind: str, outcome: str) -> None:
        self.envelopes.labels(envelope_type(kind), _label(outcome)).inc()

    def ack_sent(self, kind: str, latency_s: float) -> None:
        kind = envelope_type(kind)
        self.envelopes.labels(kind, "acked").inc()
        self.ack_seconds.labels(kind).observe(max(0.0, latency_s))

    def handler_done(self, kind: str, duration_s: float, ok: bool) -> None:
        self.handler_seconds.labels(envelope_type(kind), "ok" if ok else "error").observe(max(0.0, duration_s))

    def web_api_call(self, method: str, outcome: str) -> None:
        self.web_api.labels(_label(method), _label(outcome)).inc()

    # -- reading -------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric in this registry."""
        return generate_latest(self.registry)


class _SnapshotCollector(Collector):
    """Gauges computed from the telemetry snapshot at scrape time."""

    def __init__(self) -> None:
        self.snapshot: Callable[[], Snapshot] | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # values depend on the bound snapshot; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        if self.snapshot is None:
            return
        snap = self.snapshot()
        yield GaugeMetricFamily("nonstop_connections_live", "Socket Mode connections that said hello and are open.",
                                value=snap.live_connections)  # fmt: skip
        yield GaugeMetricFamily(
            "nonstop_connections_target", "Socket Mode connections the supervisor keeps.", value=snap.target_connections
        )
        yield GaugeMetricFamily(
            "nonstop_connections_spare",
            "Live connections held beyond the target because Slack still counts (and routes to) dead ones: "
            "the more live ones, the likelier a retry lands on one.",
            value=snap.spare_connections,
        )
        yield GaugeMetricFamily(
            "nonstop_connections_suspect",
            "Connections silent for a while: already replaced, closed once known dead, kept if heard from again.",
            value=snap.suspect_connections,
        )
        reported = snap.slack_reported_connections
        yield GaugeMetricFamily(
            "nonstop_slack_reported_connections",
            "Connections Slack counted for this app at the latest hello (num_connections), dead ones included; "
            "NaN before the first.",
            value=float("nan") if reported is None else reported,
        )
        yield GaugeMetricFamily(
            "nonstop_slack_refusing_connections",
            "1 while Slack refuses new connections (too_many_websockets: it counts its budget of 10 full, the bot's "
            "own dead sockets included) and no connection has been opened since; 0 otherwise.",
            value=int(snap.slack_refusing),
        )
        yield GaugeMetricFamily(
            "nonstop_last_inbound_age_seconds",
            "Seconds since the last frame (hello, envelope, pong, …) arrived on any connection; NaN before the first.",
            value=_age(snap.now, snap.last_inbound_at),
        )
        yield GaugeMetricFamily(
            "nonstop_supervisor_beat_age_seconds",
            "Seconds since the supervisor loop last proved it runs (it beats every ping interval, 2.25 s by default); "
            "NaN before it starts.",
            value=_age(snap.now, snap.last_beat_at),
        )
        if snap.last_rtt_ms is not None:
            yield GaugeMetricFamily(
                "nonstop_ping_rtt_seconds", "Round trip of the latest WebSocket ping.", value=snap.last_rtt_ms / 1000
            )
        yield GaugeMetricFamily(
            "nonstop_ready",
            "1 when /readyz would answer 200: a connection is live and a frame arrived within the staleness limit.",
            value=1 if snap.not_ready_reason is None else 0,
        )
        yield GaugeMetricFamily("nonstop_uptime_seconds", "Seconds since the process started.", value=snap.uptime_s)
        yield GaugeMetricFamily(
            "nonstop_backlog", "Events acked (on record in the ledger) and not yet finished.", value=snap.backlog
        )
        yield GaugeMetricFamily(
            "nonstop_backlog_limit",
            "NONSTOP_MAX_BACKLOG: past it, new events are left unacked for Slack to retry.",
            value=snap.backlog_limit,
        )
        if snap.cluster is not None:
            yield from _cluster_gauges(snap.cluster)
        if snap.catch_up is not None:
            yield from _catch_up_metrics(snap.catch_up, snap.now)
        current = str(snap.state)
        yield StateSetMetricFamily(
            "nonstop_state",
            "The supervisor's state (one of a fixed set; the details are in /readyz).",
            value={str(state): state == current for state in STATES},
        )


def _cluster_gauges(cluster: ClusterView) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "nonstop_cluster_replicas", "Replicas registered on the shared Redis ledger.", value=len(cluster.replicas)
    )
    yield GaugeMetricFamily(
        "nonstop_cluster_connections", "Socket Mode connections held by all replicas together.", value=cluster.total
    )
    yield GaugeMetricFamily(
        "nonstop_cluster_connections_allowed",
        "Connections this replica may hold out of Slack's budget of 10 per app (0: a standby).",
        value=cluster.allowed,
    )
    yield GaugeMetricFamily(
        "nonstop_ghost_connections",
        "Connections Slack counts for this app (hello's num_connections) that no replica holds: another "
        "process uses the same app token.",
        value=cluster.ghost_connections,
    )
    yield GaugeMetricFamily(
        "nonstop_redis_reachable", "1 while the shared ledger's Redis answers.", value=int(cluster.redis_reachable)
    )


def _catch_up_metrics(view: CatchUpView, now: float) -> Iterator[Metric]:
    yield StateSetMetricFamily(
        "nonstop_catch_up_mode",
        "What catch-up does: periodic scans (links live), polling (no live link), standby (another replica scans), "
        "off (no history scopes, or NONSTOP_CATCH_UP=off), starting.",
        value={mode: mode == view.mode for mode in CATCH_UP_MODES},
    )
    yield CounterMetricFamily(
        "nonstop_catch_up_recovered",
        "Mentions Slack never delivered, found in the history by catch-up and run.",
        value=view.recovered,
    )
    yield CounterMetricFamily("nonstop_catch_up_scans", "Catch-up scans completed.", value=view.scans)
    yield CounterMetricFamily("nonstop_catch_up_failed_scans", "Catch-up scans that failed.", value=view.failed_scans)
    yield GaugeMetricFamily(
        "nonstop_catch_up_last_scan_age_seconds",
        "Seconds since the latest complete catch-up scan; NaN before the first.",
        value=_age(now, view.last_scan_at),
    )


def _age(now: float, then: float | None) -> float:
    return float("nan") if then is None else max(0.0, now - then)
