"""Reading the bot's answers back from the sandbox, cheaply enough to poll for thousands of mentions; and the
answer path's scenarios that both drop-in handlers must pass, each against an app that answers every mention
with "re: <its text>". A test module imports the `test_*` scenarios and gives a `running` fixture (`Running`):
`test_sync_answer_path.py` for an `App`, `test_async_answer_path.py` for an `AsyncApp`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from typing import Any, Protocol

from nonstop.outbound.limits import POST_MESSAGE
from nonstop.status import Telemetry
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES
from sandbox.records import Delivery
from tests.nonstop.handlers.test_async_handler import RecordingLedger
from tests.nonstop.handlers.test_sync_handler import FAST
from tests.redisserver import RedisServer

WITH_HISTORY = [*BOT_SCOPES.split(","), *HISTORY_SCOPES]


def replies(sb: Sandbox, ds: list[Delivery]) -> dict[str, int]:
    """Replies per delivery, from one read of the bot's messages."""
    per_thread = Counter(c.params.get("thread_ts") for c in sb.bot_messages())
    return {d.key: per_thread[d.ts] for d in ds}


def every_one_answered(sb: Sandbox, ds: list[Delivery], timeout: float = 60) -> dict[str, int]:
    """Wait until every delivery has at least one reply; return the replies per delivery."""
    sb.wait_until(lambda: all(n >= 1 for n in replies(sb, ds).values()), timeout=timeout, what="every one answered")
    return replies(sb, ds)


def answers_by_text(sb: Sandbox, texts: list[str]) -> Counter[str]:
    """How many of the bot's posts answer each text (posts whose answer Slack lost included)."""
    posted = Counter(str(c.params.get("text")) for c in sb.bot_messages())
    return Counter({t: posted[f"re: {t}"] for t in texts})


def answers_in_threads(sb: Sandbox, ds: list[Delivery]) -> Counter[str]:
    """How many of the bot's posts are in each delivery's thread."""
    return Counter(replies(sb, ds))


class Running(Protocol):
    """A handler connected with an answering app (in each mention's thread, or in its channel) for the length of
    a `with`; it gives a graceful stop that returns once the handler has stopped (drained)."""

    def __call__(
        self, sb: Sandbox, *, threaded: bool, telemetry: Telemetry | None = None, **keywords: Any
    ) -> AbstractContextManager[Callable[[], None]]: ...


def test_forty_mentions_in_one_channel_at_the_posting_limit_all_answered_once_in_order_and_others_not_held_up(
    sandbox: Sandbox, running: Running
) -> None:
    """40 mentions at once in one channel at the posting limit: all answered once, in order, with few 429s;
    a mention in another channel meanwhile is answered within 2 s."""
    sandbox.set_rate_limits(on=True)
    texts = [f"ping {i:02d}" for i in range(40)]
    with running(sandbox, threaded=False):
        sandbox.mentions(texts)
        sandbox.wait_until(lambda: answers_by_text(sandbox, texts).total() >= 5, timeout=30, what="the first answers")
        sent = time.monotonic()
        elsewhere = sandbox.mention("ping elsewhere", channel="C0ELSE001")
        reply = sandbox.wait_for_message(thread_ts=None, channel="C0ELSE001", timeout=2.0)
        waited = time.monotonic() - sent
        owed = 40 - answers_by_text(sandbox, texts).total()
        sandbox.wait_until(
            lambda: all(answers_by_text(sandbox, texts).values()), timeout=90, what="every one of the 40 answered"
        )
        counts = answers_by_text(sandbox, texts)
    assert reply.params["text"] == "re: ping elsewhere"
    assert elsewhere.ts
    assert waited < 2.0, f"answered in {waited:.2f} s"
    assert owed > 20, f"the busy channel owed only {owed} by then"
    assert set(counts.values()) == {1}, "every one answered, none twice"
    general = [str(c.params["text"]) for c in sandbox.bot_messages() if c.params.get("channel") == "C0GENERAL"]
    assert sorted(general) == [f"re: {t}" for t in texts]
    # Calls the governor holds leave oldest event first; the first burst goes as its listeners call (listener
    # threads may call in either order), so the order is checked from there on.
    order = [texts.index(text.removeprefix("re: ")) for text in general]
    first = int(POST_MESSAGE.burst)
    assert order[first:] == sorted(order[first:]), "answers that waited, in event order"
    ratelimited = [c for c in sandbox.calls("chat.postMessage") if c.status == 429]
    assert len(ratelimited) <= POST_MESSAGE.burst + 1, "the governor waits out Retry-After instead of hammering"


def test_every_fourth_post_refused_with_503_costs_no_answer(sandbox: Sandbox, running: Running) -> None:
    """Every 4th post refused with a 503: every mention answered once, each 503 retried by the governor."""
    sandbox.fail_calls(every=4, mode="http_503")
    telemetry = Telemetry()
    with running(sandbox, threaded=True, telemetry=telemetry):
        ds = sandbox.mentions([f"ping {i}" for i in range(24)])
        sandbox.wait_until(lambda: all(answers_in_threads(sandbox, ds).values()), timeout=60, what="all answered")
        counts = answers_in_threads(sandbox, ds)
    assert set(counts.values()) == {1}, "every one answered, none twice"
    failed = sum(1 for c in sandbox.calls("chat.postMessage") if c.status == 503)
    assert failed >= 6
    retried = telemetry.metrics.registry.get_sample_value(
        "nonstop_web_api_retries_total", {"method": "chat.postMessage", "cause": "server_error"}
    )
    assert retried == failed, "each 503 tried again by the governor, not by slack_sdk's handlers"


def test_posted_then_500_with_history_scopes_is_found_in_the_thread_and_not_posted_again(
    sandbox: Sandbox, running: Running
) -> None:
    """Every 4th post taken by Slack and answered 500: with the history scopes, found by its metadata in the
    thread and not posted again."""
    sandbox.set_scopes(WITH_HISTORY)
    sandbox.fail_calls(every=4, mode="internal_error")
    telemetry = Telemetry()
    with running(sandbox, threaded=True, telemetry=telemetry):
        ds = sandbox.mentions([f"ping {i}" for i in range(20)])
        sandbox.wait_until(lambda: all(answers_in_threads(sandbox, ds).values()), timeout=60, what="all answered")
        unsure = [c for c in sandbox.calls("chat.postMessage") if c.fault == "internal_error"]

        def found() -> float:
            return telemetry.metrics.registry.get_sample_value("nonstop_reply_lookups_total", {"outcome": "found"}) or 0

        sandbox.wait_until(lambda: found() == len(unsure), timeout=30, what="each unsure post looked up and found")
        counts = answers_in_threads(sandbox, ds)
    assert len(unsure) >= 5
    assert set(counts.values()) == {1}, "found by its metadata: none twice"
    marked = [c for c in sandbox.bot_messages() if c.params.get("metadata")]
    assert len(marked) == 20, "every answer marked with the event it answers"


def test_a_stop_waits_for_answers_still_waiting_on_the_posting_limit_and_only_then_finishes_their_events(
    sandbox: Sandbox, running: Running
) -> None:
    """A graceful stop while answers wait on the posting limit: it returns once each is delivered, once, and only
    then are their events finished in the ledger."""
    sandbox.set_rate_limits(on=True)
    ledger = RecordingLedger()
    texts = [f"ping {i}" for i in range(10)]
    settings = replace(FAST, drain_timeout_s=30)
    with running(sandbox, threaded=False, ledger=ledger, settings=settings) as stop:
        ds = sandbox.mentions(texts)
        sandbox.wait_until(lambda: answers_by_text(sandbox, texts).total() >= 4, timeout=30, what="the first answers")
        owed = 10 - answers_by_text(sandbox, texts).total()
        stop()
        counts = answers_by_text(sandbox, texts)
    assert owed > 0, "answers were still waiting when the stop began"
    assert set(counts.values()) == {1}, "each delivered once before the stop returned"
    assert len(set(ledger.finished)) == len(ds), "their events finished, each once"


def test_three_replicas_on_redis_share_one_posting_budget(
    sandbox: Sandbox, redis_server: RedisServer, running: Running
) -> None:
    """Three handlers on one Redis ledger, 12 mentions in one channel at the posting limit: each answered once,
    whichever replica took it, and Slack saw at most one 429 (12 with the sharing switched off for a probe)."""
    sandbox.set_rate_limits(on=True)
    settings = replace(FAST, ledger_url=redis_server.url)
    texts = [f"ping {i:02d}" for i in range(12)]
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(running(sandbox, threaded=True, settings=settings))
        sandbox.wait_until(lambda: len(sandbox.connections(live_only=True)) >= 6, timeout=30, what="6 links")
        ds = sandbox.mentions(texts)
        sandbox.wait_until(lambda: all(answers_in_threads(sandbox, ds).values()), timeout=60, what="all answered")
        counts = answers_in_threads(sandbox, ds)
    assert set(counts.values()) == {1}, "each answered once, whichever replica took it"
    ratelimited = [c for c in sandbox.calls("chat.postMessage") if c.status == 429]
    # Alone, a process learns the limit from Slack's first 429s (up to a burst of them, one per replica if each
    # learnt alone); replicas take turns on one shared bucket from the start.
    assert len(ratelimited) <= 1
