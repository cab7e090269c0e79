"""The answer path for a Bolt `AsyncApp` on `AsyncSupervisedSocketModeHandler`: a real `AsyncApp` whose listeners
`await say(...)`, against the sandbox over real sockets, with Slack's rate limits and its bad moments switched on.
The same scenarios as `test_answer_path.py` runs on `python app.py` (issue 17's acceptance), minus what is the
bot's own (its apology) or the process's (SIGKILL, replicas), plus a stop while answers wait. Every wait is on
an observed event, with a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.integration.answers import (  # noqa: F401 - the shared scenarios, run here with this module's `running`
    Running,
    answers_in_threads,
    test_a_stop_waits_for_answers_still_waiting_on_the_posting_limit_and_only_then_finishes_their_events,
    test_every_fourth_post_refused_with_503_costs_no_answer,
    test_forty_mentions_in_one_channel_at_the_posting_limit_all_answered_once_in_order_and_others_not_held_up,
    test_posted_then_500_with_history_scopes_is_found_in_the_thread_and_not_posted_again,
    test_three_replicas_on_redis_share_one_posting_budget,
)
from tests.nonstop.handlers.test_async_handler import connected


def answering_app(sb: Sandbox, *, threaded: bool) -> AsyncApp:
    """An `AsyncApp` that answers each mention with "re: <its text>", in its thread or in the channel. Its client
    keeps slack_sdk's default retry handler (connection errors), which the governor's copies drop."""
    app = AsyncApp(client=AsyncWebClient(token=sb.bot_token, base_url=sb.api_url))

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        text = event["text"].split("> ", 1)[-1]
        await say(text=f"re: {text}", thread_ts=event["ts"] if threaded else None)

    return app


@contextmanager
def _running(
    sb: Sandbox, *, threaded: bool, telemetry: Telemetry | None = None, **keywords: Any
) -> Iterator[Callable[[], None]]:
    """The answering `AsyncApp` on a connected async handler; gives `disconnect_async()` run on the app's loop."""
    with connected(sb, answering_app(sb, threaded=threaded), telemetry, **keywords) as (handler, app_loop):
        yield lambda: app_loop.run(handler.disconnect_async(), timeout=40)


@pytest.fixture
def running() -> Running:
    return _running


def test_a_lazy_listener_answers_through_the_governor_too(sandbox: Sandbox) -> None:
    """Bolt deep-copies the request (its client and `say` included) for a lazy listener: the copy keeps the
    request's governor and event."""
    app = AsyncApp(client=AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    async def acknowledge(ack: Any) -> None:
        await ack()

    async def answer(event: dict[str, Any], say: Any) -> None:
        await say(text="later", thread_ts=event["ts"])

    app.event("app_mention")(ack=acknowledge, lazy=[answer])
    with connected(sandbox, app):
        d = sandbox.mention("ping")
        reply = sandbox.wait_for_message(thread_ts=d.ts)
    assert reply.params["text"] == "later"
    meta = reply.params["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    payload = meta["event_payload"]
    assert (payload["event_id"], payload["reply"]) == (d.event_id, 0), "marked: it went through the governor"
