"""The thread driver against the sandbox over real HTTP: what waits where, retries, order, the tracker, giving up.

Calls go through a `GovernedWebClient` bound to an `Answering` context, as a listener's do; the sandbox's
Web API faults (429 with Retry-After, 503) stand in for Slack's bad moments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from nonstop.bolt.lanes import Tracker
from nonstop.config.settings import OutboundSettings
from nonstop.net.retry import Schedule
from nonstop.outbound import Answering, GovernedWebClient, NotDelivered, Outbound, PendingResponse
from nonstop.outbound.metrics import OutboundMetrics
from sandbox import Sandbox

FAST = Schedule(fast_s=0.2, small_jitter=0.0)


@pytest.fixture
def outbound() -> Iterator[Outbound]:
    out = Outbound(OutboundSettings(reply_deadline_s=30), schedule=FAST, metrics=OutboundMetrics())
    yield out
    out.close()


def client(sb: Sandbox, outbound: Outbound, answering: Answering) -> GovernedWebClient:
    return GovernedWebClient(token=sb.bot_token, base_url=sb.api_url, outbound=outbound, answering=answering)


def event(n: int, tracker: Tracker | None = None) -> Answering:
    return Answering(event_id=f"Ev0TEST{n:04d}", event_ts=f"1700000000.{n:06d}", tracker=tracker)


def posts(sb: Sandbox, channel: str = "C0GENERAL") -> list[str]:
    return [c.params["text"] for c in sb.bot_messages() if c.params.get("channel") == channel]


def test_a_call_that_may_go_now_goes_now_on_the_callers_thread(sandbox: Sandbox, outbound: Outbound) -> None:
    resp = client(sandbox, outbound, event(1)).chat_postMessage(channel="C0GENERAL", text="pong")
    assert not isinstance(resp, PendingResponse)
    assert resp["ok"]
    assert posts(sandbox) == ["pong"]


def test_a_refusal_for_good_reaches_the_caller_at_once(sandbox: Sandbox, outbound: Outbound) -> None:
    with pytest.raises(SlackApiError) as refused:
        client(sandbox, outbound, event(1)).chat_postMessage(channel="C0GENERAL")  # no text
    assert refused.value.response["error"] == "no_text"
    assert len(sandbox.calls("chat.postMessage")) == 1, "not retried: retrying cannot fix it"


def test_a_429_returns_at_once_and_the_answer_follows_exactly_retry_after_later(
    sandbox: Sandbox, outbound: Outbound
) -> None:
    sandbox.outage(1.0, mode="ratelimited", retry_after=2, drop_connections=False, methods=["chat.postMessage"])
    resp = client(sandbox, outbound, event(1)).chat_postMessage(channel="C0GENERAL", text="pong")
    assert isinstance(resp, PendingResponse)
    assert not resp.done(), "the caller's thread is free while the call waits"
    assert resp["ok"], "reading it waits for the answer"
    tries = sandbox.calls("chat.postMessage")
    assert [c.status for c in tries] == [429, 200], "one 429, then the answer: no hammering"
    assert tries[1].at - tries[0].answered_at >= 2.0, "waited all of Retry-After"  # type: ignore[operator]


def test_a_503_is_tried_again_and_no_one_hears_of_it(sandbox: Sandbox, outbound: Outbound) -> None:
    sandbox.outage(0.5, mode="http_503", drop_connections=False, methods=["chat.postMessage"])
    resp = client(sandbox, outbound, event(1)).chat_postMessage(channel="C0GENERAL", text="pong")
    assert resp["ok"]
    statuses = [c.status for c in sandbox.calls("chat.postMessage")]
    assert statuses[0] == 503
    assert statuses[-1] == 200
    assert posts(sandbox) == ["pong"]


def test_answers_to_one_conversation_leave_in_the_order_of_their_events(sandbox: Sandbox, outbound: Outbound) -> None:
    sandbox.outage(0.5, mode="ratelimited", retry_after=1, drop_connections=False, methods=["chat.postMessage"])
    first = client(sandbox, outbound, event(0)).chat_postMessage(channel="C0GENERAL", text="answer 0")
    assert isinstance(first, PendingResponse)
    later = [client(sandbox, outbound, event(n)).chat_postMessage(channel="C0GENERAL", text=f"answer {n}")
             for n in (4, 2, 3, 1)]  # fmt: skip
    assert all(isinstance(r, PendingResponse) for r in later), "the conversation owes earlier answers: all wait"
    for resp in [first, *later]:
        assert resp["ok"]
    assert posts(sandbox) == [f"answer {n}" for n in range(5)]


def test_an_event_is_finished_only_once_its_waiting_answer_is_delivered(sandbox: Sandbox, outbound: Outbound) -> None:
    finished = threading.Event()
    tracker = Tracker(finished.set)
    sandbox.outage(1.0, mode="ratelimited", retry_after=1, drop_connections=False, methods=["chat.postMessage"])
    resp = client(sandbox, outbound, event(1, tracker)).chat_postMessage(channel="C0GENERAL", text="pong")
    tracker.release()  # the listener returns
    assert not finished.is_set(), "its answer still waits: the event is not finished"
    assert finished.wait(10)
    assert resp.done()
    assert posts(sandbox) == ["pong"]


def test_an_answer_that_cannot_make_its_deadline_is_given_up_loudly(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = OutboundMetrics()
    out = Outbound(OutboundSettings(reply_deadline_s=1.0), schedule=FAST, metrics=metrics)
    finished = threading.Event()
    tracker = Tracker(finished.set)
    sandbox.outage(10, mode="ratelimited", retry_after=5, drop_connections=False, methods=["chat.postMessage"])
    try:
        with caplog.at_level(logging.ERROR, logger="nonstop.outbound"):
            with pytest.raises(NotDelivered):  # at once, or when read: either way, never a 429
                client(sandbox, out, event(7, tracker)).chat_postMessage(channel="C0GENERAL", text="pong").validate()
            tracker.release()
        assert finished.wait(5), "given up: the event is finished, not stuck"
        [line] = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
        assert "Ev0TEST0007" in line
        assert "chat.postMessage" in line
        assert metrics.given_up.labels("chat.postMessage", "deadline")._value.get() == 1
        assert len(sandbox.calls("chat.postMessage")) == 1, "Retry-After past the deadline: not tried again"
    finally:
        out.close()


def test_the_bots_own_calls_outside_a_request_go_once_and_raise_as_usual(sandbox: Sandbox, outbound: Outbound) -> None:
    own = GovernedWebClient(token=sandbox.bot_token, base_url=sandbox.api_url, outbound=outbound)
    assert own.auth_test()["ok"]
    sandbox.outage(5, mode="http_503", drop_connections=False, methods=["auth.test"])
    with pytest.raises(SlackApiError):
        own.auth_test()
    assert len(sandbox.calls("auth.test")) == 2, "no retry of its own: its caller has a policy"
