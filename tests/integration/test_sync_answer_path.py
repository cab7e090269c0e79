"""The answer path for a user's own Bolt `App` on `SupervisedSocketModeHandler`: a real `App`, built as its owner
would (a plain `WebClient`), whose listeners call `say(...)`, against the sandbox over real sockets, with Slack's
rate limits and its bad moments switched on. The scenarios `test_async_answer_path.py` runs for an `AsyncApp`
(`tests.integration.answers`), plus what is the sync handler's own: an app built with its governor (as `python
app.py` builds its) keeps that one. Every wait is on an observed event, with a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from nonstop.outbound import AnswerThroughGovernor, GovernedWebClient, Outbound
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.integration.answers import (  # noqa: F401 - the shared scenarios, run here with this module's `running`
    Running,
    test_a_stop_waits_for_answers_still_waiting_on_the_posting_limit_and_only_then_finishes_their_events,
    test_every_fourth_post_refused_with_503_costs_no_answer,
    test_forty_mentions_in_one_channel_at_the_posting_limit_all_answered_once_in_order_and_others_not_held_up,
    test_posted_then_500_with_history_scopes_is_found_in_the_thread_and_not_posted_again,
    test_three_replicas_on_redis_share_one_posting_budget,
)
from tests.nonstop.handlers.test_sync_handler import handler_for


def answering_app(sb: Sandbox, *, threaded: bool) -> App:
    """An `App` that answers each mention with "re: <its text>", in its thread or in the channel. Its client keeps
    slack_sdk's default retry handler (connection errors), which the governor's copies drop."""
    app = App(client=WebClient(token=sb.bot_token, base_url=sb.api_url))

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Any) -> None:
        text = event["text"].split("> ", 1)[-1]
        say(text=f"re: {text}", thread_ts=event["ts"] if threaded else None)

    return app


@contextmanager
def _running(
    sb: Sandbox, *, threaded: bool, telemetry: Telemetry | None = None, **keywords: Any
) -> Iterator[Callable[[], None]]:
    """The answering `App` on a connected sync handler; gives its `disconnect()`."""
    if telemetry is not None:
        keywords["telemetry"] = telemetry
    with handler_for(sb, answering_app(sb, threaded=threaded), **keywords) as handler:
        handler.connect()
        yield lambda: handler.disconnect(timeout_s=40)


@pytest.fixture
def running() -> Running:
    return _running


def marked_by(reply: Any) -> tuple[str, int]:
    """The event id and place a reply's metadata names: only the governor marks posts."""
    meta = reply.params["metadata"]
    payload = (json.loads(meta) if isinstance(meta, str) else meta)["event_payload"]
    return payload["event_id"], payload["reply"]


def test_an_app_built_with_its_own_governor_keeps_it_and_the_handler_drains_that_one(sandbox: Sandbox) -> None:
    """As `python app.py` builds its App (`nonstop.startup.build_app`): the handler adds no second middleware and
    makes no governor of its own; a stop waits for the app's governor's answers."""
    own = Outbound(metrics=OutboundMetrics())
    client = GovernedWebClient(token=sandbox.bot_token, base_url=sandbox.api_url, outbound=own)
    app = App(client=client)
    app.use(AnswerThroughGovernor(own, client.telemetry, client.calls))

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Any) -> None:
        say(text="pong", thread_ts=event["ts"])

    before = len(app._middleware_list)
    with handler_for(sandbox, app) as handler:
        handler.connect()
        assert handler.outbound is own
        assert len(app._middleware_list) == before, "no second middleware"
        d = sandbox.mention("ping")
        assert marked_by(sandbox.wait_for_message(thread_ts=d.ts)) == (d.event_id, 0)
        assert handler.supervisor is not None
        assert handler.disconnect(timeout_s=30) == 0
        assert handler.supervisor.drained
    own.close()


def test_a_second_handler_for_the_same_app_answers_through_its_own_governor(sandbox: Sandbox) -> None:
    app = answering_app(sandbox, threaded=True)
    with handler_for(sandbox, app) as first:
        first.connect()
        d = sandbox.mention("one")
        assert marked_by(sandbox.wait_for_message(thread_ts=d.ts)) == (d.event_id, 0)
    before = len(app._middleware_list)
    with handler_for(sandbox, app) as second:
        second.connect()
        assert second.outbound is not first.outbound
        d = sandbox.mention("two")
        assert marked_by(sandbox.wait_for_message(thread_ts=d.ts)) == (d.event_id, 0), "through the second's"
        assert len(app._middleware_list) == before
