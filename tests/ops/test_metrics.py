"""Telemetry hooks feed the Prometheus registry; labels stay bounded; the Web API client counts its calls."""

from __future__ import annotations

import math
import re
import time
import urllib.error
from pathlib import Path

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.outbound.metrics import OutboundMetrics
from nonstop.status import ClusterView, Drop, Telemetry
from nonstop.status.metrics import close_code
from nonstop.status.snapshot import CatchUpView
from nonstop.status.state import State
from nonstop.webclient import InstrumentedWebClient, outcome_of


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = telemetry.metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    return samples(telemetry).get((name, tuple(sorted(labels.items()))))


def test_hooks_feed_counters_and_histograms():
    t = Telemetry()
    t.attempt("ok")
    t.attempt("network")
    t.attempt("network")
    t.connection_up()
    t.inbound()
    t.connection_down(Drop(at=0, cause="half_open", explanation="x", connection_age_s=3.0))
    t.connection_down(Drop(at=0, cause="server_close", explanation="x", connection_age_s=3.0, close_code=1001))
    t.envelope("events_api", "received")
    t.envelope("events_api", "duplicate")
    t.ack_sent("events_api", 0.004)
    t.handler_done("slash_commands", 0.2, ok=False)
    t.web_api_call("chat.postMessage", "ok")

    assert value(t, "nonstop_connection_attempts_total", outcome="network") == 2
    assert value(t, "nonstop_connection_attempts_total", outcome="ok") == 1
    assert value(t, "nonstop_connection_drops_total", cause="half_open", code="none") == 1
    assert value(t, "nonstop_connection_drops_total", cause="server_close", code="1001") == 1
    assert value(t, "nonstop_envelopes_total", type="events_api", outcome="duplicate") == 1
    assert value(t, "nonstop_envelopes_total", type="events_api", outcome="acked") == 1
    assert value(t, "nonstop_ack_latency_seconds_bucket", type="events_api", le="0.005") == 1
    assert value(t, "nonstop_ack_latency_seconds_bucket", type="events_api", le="0.0025") == 0
    assert value(t, "nonstop_handler_duration_seconds_count", type="slash_commands", outcome="error") == 1
    assert value(t, "nonstop_web_api_calls_total", method="chat.postMessage", outcome="ok") == 1
    assert value(t, "nonstop_connections_live") == 0
    assert value(t, "nonstop_connections_target") == 1
    assert 0 <= value(t, "nonstop_last_inbound_age_seconds") < 5
    assert value(t, "nonstop_state", nonstop_state="starting") == 1
    assert value(t, "process_start_time_seconds") == pytest.approx(psutil.Process().create_time(), abs=1)
    assert value(t, "nonstop_uptime_seconds") == pytest.approx(time.time() - t.started_at, abs=1)


def test_scrape_time_values_follow_the_snapshot():
    t = Telemetry(target_connections=2)
    t.connection_up()
    t.set_state(State.BACKING_OFF, "waiting 4.2 s before the next attempt")
    t.beat()
    assert value(t, "nonstop_connections_live") == 1
    assert value(t, "nonstop_connections_target") == 2
    assert value(t, "nonstop_state", nonstop_state="backing_off") == 1
    assert value(t, "nonstop_state", nonstop_state="connected") == 0
    assert 0 <= value(t, "nonstop_supervisor_beat_age_seconds") < 5
    # Before any frame, the age is unknown: NaN, not a misleading 0.
    age = value(t, "nonstop_last_inbound_age_seconds")
    assert age is not None
    assert math.isnan(age)
    assert value(t, "nonstop_ready") == 0
    t.inbound()
    t.set_state(State.DEGRADED, "1 of 2 connections")
    assert value(t, "nonstop_ready") == 1


def test_label_values_are_bounded():
    t = Telemetry()
    t.envelope("user typed <this>", "received")
    t.attempt("Slack said: something long and odd with spaces")
    t.web_api_call("chat.postMessage", "x" * 200)
    t.connection_down(Drop(at=0, cause="reset", explanation="?", connection_age_s=1, close_code=70000))
    s = samples(t)
    assert value(t, "nonstop_envelopes_total", type="other", outcome="received") == 1
    assert value(t, "nonstop_connection_attempts_total", outcome="other") == 1
    assert value(t, "nonstop_web_api_calls_total", method="chat.postMessage", outcome="other") == 1
    assert value(t, "nonstop_connection_drops_total", cause="reset", code="none") == 1
    for _name, labels in s:
        for _key, label in labels:
            assert len(label) <= 48


def test_every_state_is_one_series_and_exactly_one_is_set():
    t = Telemetry()
    for state in State:
        t.set_state(state, "some detail")
        assert {label: value(t, "nonstop_state", nonstop_state=label) for label in map(str, State)} == {
            str(other): 1.0 if other is state else 0.0 for other in State
        }


def test_close_code_label():
    assert close_code(1006) == "1006"
    assert close_code(None) == "none"
    assert close_code(7) == "none"


def _api_error(status: int, data: dict) -> SlackApiError:
    response = SlackResponse(
        client=None, http_verb="POST", api_url="u", req_args={}, data=data, headers={}, status_code=status
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (_api_error(200, {"ok": False, "error": "channel_not_found"}), "channel_not_found"),
        (_api_error(429, {"ok": False, "error": "ratelimited"}), "ratelimited"),
        (_api_error(503, {}), "http_503"),
        (TimeoutError("timed out"), "timeout"),
        (urllib.error.URLError(TimeoutError("timed out")), "timeout"),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), "network"),
        (ValueError("odd"), "error"),
    ],
)
def test_web_api_outcomes(error, outcome):
    assert outcome_of(error) == outcome


def test_instrumented_client_counts_calls_against_the_sandbox(sandbox):
    t = Telemetry()
    client = InstrumentedWebClient(token=sandbox.bot_token, base_url=sandbox.api_url, telemetry=t)
    client.auth_test()
    client.chat_postMessage(channel="C0GENERAL", text="hello")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="", text="hello")
    InstrumentedWebClient.like(client, t).auth_test()
    assert value(t, "nonstop_web_api_calls_total", method="auth.test", outcome="ok") == 2
    assert value(t, "nonstop_web_api_calls_total", method="chat.postMessage", outcome="ok") == 1
    assert value(t, "nonstop_web_api_calls_total", method="chat.postMessage", outcome="channel_not_found") == 1


def test_the_operations_doc_names_only_metrics_that_exist():
    t = Telemetry()
    t.attempt("ok")
    t.connection_down(Drop(at=0, cause="reset", explanation="x", connection_age_s=1, close_code=1006))
    t.envelope("events_api", "received")
    t.ack_sent("events_api", 0.01)
    t.handler_done("events_api", 0.01, ok=True)
    t.web_api_call("auth.test", "ok")
    t.rtt(1.0)
    t.set_cluster(ClusterView(replicas=(), budget=10, allowed=1, redis_reachable=True))  # replicas only
    t.set_catch_up(CatchUpView("periodic", last_scan_at=time.time()))  # what a supervisor with catch-up says
    way_out = OutboundMetrics(t.metrics.registry)  # as nonstop.startup registers them
    way_out.waited("chat.postMessage", 1.0)
    way_out.retry("chat.postMessage", "ratelimited")
    way_out.gave_up("chat.postMessage", "deadline")
    way_out.looked("found")
    exposed = {name for name, _labels in samples(t)}
    exposed |= {family.name for family in text_string_to_metric_families(t.metrics.render().decode())}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    named = set(re.findall(r"\bnonstop_[a-z_]+[a-z]", doc))
    assert named, "the doc names no metrics?"
    assert named <= exposed, named - exposed


def test_the_operations_doc_alert_rules_are_valid_yaml():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    assert {"NonstopNotReady", "NonstopConnectionDrops", "NonstopDuplicatesSuppressed"} <= {r["alert"] for r in rules}
    assert all(r["expr"] for r in rules)


def test_the_backlog_and_its_limit_are_exported():
    t = Telemetry()
    t.set_backlog(7, 1000)
    assert value(t, "nonstop_backlog") == 7
    assert value(t, "nonstop_backlog_limit") == 1000


def test_the_way_outs_labels_are_bounded():
    t = Telemetry()
    way_out = OutboundMetrics(t.metrics.registry)
    way_out.retry("some.unknownMethod", "a cause nobody knows")
    way_out.gave_up("chat.postMessage", "<script>")
    assert value(t, "nonstop_web_api_retries_total", method="other", cause="server_error") == 1
    assert value(t, "nonstop_replies_given_up_total", method="chat.postMessage", reason="refused") == 1


def test_catch_up_is_in_the_metrics_with_bounded_labels() -> None:
    telemetry = Telemetry()
    assert value(telemetry, "nonstop_catch_up_recovered_total") is None, "nothing before a supervisor says"
    telemetry.set_catch_up(CatchUpView("polling", last_scan_at=time.time() - 5, recovered=3, scans=4, failed_scans=1))
    assert value(telemetry, "nonstop_catch_up_recovered_total") == 3
    assert value(telemetry, "nonstop_catch_up_scans_total") == 4
    assert value(telemetry, "nonstop_catch_up_failed_scans_total") == 1
    assert value(telemetry, "nonstop_catch_up_mode", nonstop_catch_up_mode="polling") == 1
    assert value(telemetry, "nonstop_catch_up_mode", nonstop_catch_up_mode="periodic") == 0
    assert 4 < (value(telemetry, "nonstop_catch_up_last_scan_age_seconds") or 0) < 60
