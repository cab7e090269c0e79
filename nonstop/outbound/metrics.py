"""Metrics of the way out, registered in the bot's own registry (`nonstop.metrics.Metrics.registry`).

Every label is bounded: methods are the ones `nonstop.outbound.limits` knows (anything else is "other"),
causes and reasons are fixed vocabularies. 429s by method are already counted by every call's outcome in
`nonstop_web_api_calls_total{outcome="ratelimited"}`.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nonstop.outbound.limits import METHOD_TIERS

__all__ = ["CAUSES", "REASONS", "OutboundMetrics", "outbound_metrics_in"]

CAUSES = ("ratelimited", "server_error", "network", "timeout")
REASONS = ("deadline", "refused", "unsure")
LOOKUPS = ("found", "not_found", "unavailable")
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def method_label(method: str) -> str:
    return method if method == "chat.postMessage" or method in METHOD_TIERS else "other"


class OutboundMetrics:
    """Counters and histograms of the way out. `waiting` is read at scrape time (a callable)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.registry = r
        self.wait_seconds = Histogram(
            "nonstop_web_api_wait_seconds",
            "Time a Web API call spent in the governor (waiting for its turn, Retry-After, backoff) before the "
            "try that settled it, by method.",
            ["method"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "nonstop_web_api_retries",
            "Web API calls tried again, by method and cause (ratelimited, server_error, network, timeout).",
            ["method", "cause"],
            registry=r,
        )
        self.given_up = Counter(
            "nonstop_replies_given_up",
            "Web API calls that answered an event and were not delivered, by method and reason: deadline "
            "(NONSTOP_REPLY_DEADLINE passed), refused (Slack refused it for good after it had waited), unsure "
            "(it may have been delivered; NONSTOP_UNSURE_ANSWER=skip).",
            ["method", "reason"],
            registry=r,
        )
        self.lookups = Counter(
            "nonstop_reply_lookups",
            "Looks in a conversation for replies Slack may already have, by outcome (found, not_found, unavailable).",
            ["outcome"],
            registry=r,
        )
        self._waiting = _Waiting()
        r.register(self._waiting)

    def bind(self, waiting: object) -> None:
        """`waiting()`: the number of calls queued in the governor now (read at scrape time)."""
        self._waiting.read = waiting  # type: ignore[assignment]

    def waited(self, method: str, seconds: float) -> None:
        self.wait_seconds.labels(method_label(method)).observe(max(0.0, seconds))

    def retry(self, method: str, cause: str) -> None:
        self.retries.labels(method_label(method), cause if cause in CAUSES else "server_error").inc()

    def gave_up(self, method: str, reason: str) -> None:
        self.given_up.labels(method_label(method), reason if reason in REASONS else "refused").inc()

    def looked(self, outcome: str) -> None:
        self.lookups.labels(outcome if outcome in LOOKUPS else "unavailable").inc()


class _Waiting(Collector):
    def __init__(self) -> None:
        self.read = lambda: 0

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "nonstop_web_api_waiting", "Web API calls waiting in the governor now.", value=float(self.read())
            )
        ]


_IN: weakref.WeakKeyDictionary[CollectorRegistry, OutboundMetrics] = weakref.WeakKeyDictionary()
_IN_LOCK = threading.Lock()


def outbound_metrics_in(registry: CollectorRegistry) -> OutboundMetrics:
    """The way out's metrics in `registry`, made once: a registry takes each metric once, and one process may
    make handler after handler with the same telemetry (`nonstop_web_api_waiting` reads the latest one's)."""
    with _IN_LOCK:
        metrics = _IN.get(registry)
        if metrics is None:
            metrics = _IN[registry] = OutboundMetrics(registry)
        return metrics
