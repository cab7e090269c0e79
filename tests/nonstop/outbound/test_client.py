"""The sync answer path's parts that need no Slack: the per-request client's settings, the middleware's binding,
and the middleware added once per app (an app built with its own keeps it). Against the sandbox:
tests/integration/test_sync_answer_path.py."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse, Say
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from nonstop.bolt.lanes import EVENTS, Tracker, working_on
from nonstop.config.settings import OutboundSettings
from nonstop.outbound import Answering, AnswerThroughGovernor, GovernedWebClient, Outbound
from nonstop.outbound.client import built_with, govern
from nonstop.outbound.metrics import OutboundMetrics


def outbound() -> Outbound:
    return Outbound(OutboundSettings(reply_deadline_s=30), metrics=OutboundMetrics())


KEPT = ("token", "base_url", "timeout", "ssl", "proxy", "logger", "default_params")
"""What a request's governed client keeps of the user's (`headers` is checked by its entry)."""


def users_options() -> dict[str, Any]:
    """A user's client options, every one Bolt copies into a request's client set to something of its own."""
    return {
        "token": "xoxb-user",
        "base_url": "http://127.0.0.1:9/api/",
        "timeout": 7,
        "ssl": ssl.create_default_context(),
        "proxy": "http://proxy.example:3128",
        "headers": {"X-Mine": "1"},
        "team_id": "T0MINE",
        "logger": logging.getLogger("mine"),
    }


def users_client() -> WebClient:
    return WebClient(**users_options(), retry_handlers=[RateLimitErrorRetryHandler()])


def app_of(client: WebClient) -> App:
    return App(client=client, token_verification_enabled=False, request_verification_enabled=False)


def test_a_requests_governed_client_keeps_the_users_options_and_drops_slack_sdks_retry_handlers() -> None:
    mine = users_client()
    copy = GovernedWebClient.for_request(mine, outbound=outbound(), answering=Answering(event_id=None, event_ts=None))
    assert {k: getattr(copy, k) for k in KEPT} == {k: getattr(mine, k) for k in KEPT}
    assert copy.headers["X-Mine"] == "1"
    assert copy.retry_handlers == [], "the governor decides every retry"
    assert isinstance(mine.retry_handlers[0], RateLimitErrorRetryHandler), "the user's own client is untouched"


def test_the_middleware_binds_each_requests_client_and_say_to_its_event() -> None:
    out = outbound()
    body = {"type": "event_callback", "event_id": "Ev0UNIT1", "event": {"type": "app_mention", "ts": "1700000000.1"}}
    req = BoltRequest(body=body, mode="socket_mode")
    plain = users_client()
    req.context["client"] = plain
    req.context["say"] = Say(client=plain, channel="C0GENERAL")
    tracker = Tracker(lambda: None)
    done = BoltResponse(status=200)
    with working_on(EVENTS, tracker):
        resp = AnswerThroughGovernor(out).process(req=req, resp=BoltResponse(status=200), next=lambda: done)
    assert resp is done
    assert_bound(req.context, GovernedWebClient, out, tracker)


def assert_bound(context: Any, kind: type, out: Any, tracker: Tracker) -> None:
    """The request's client is a governed `kind` through `out`, for its event, holding `tracker`, and `say` uses
    it, with the user's token (the middleware test's checks, for either app)."""
    governed = context["client"]
    assert isinstance(governed, kind)
    assert governed.outbound is out
    assert governed.answering is not None
    assert (governed.answering.event_id, governed.answering.event_ts) == ("Ev0UNIT1", "1700000000.1")
    assert governed.answering.tracker is tracker
    assert context["say"].client is governed
    assert governed.token == "xoxb-user"


def test_govern_adds_the_middleware_once_per_app_and_points_it_at_the_latest_way_out() -> None:
    app = app_of(users_client())
    first, second = outbound(), outbound()
    before = len(app._middleware_list)
    middleware = govern(app, first)
    assert govern(app, second) is middleware
    assert middleware.outbound is second
    assert len(app._middleware_list) == before + 1
    assert built_with(app) is None, "added by govern: a later handler takes it over"


def test_an_app_built_with_its_own_governor_keeps_it() -> None:
    """As `nonstop.startup.build_app` builds `python app.py`'s App: its middleware is not added twice nor
    pointed elsewhere."""
    own = outbound()
    app = app_of(GovernedWebClient(token="xoxb-0", base_url="http://127.0.0.1:9/api/", outbound=own))
    mine = AnswerThroughGovernor(own)
    app.use(mine)
    before = len(app._middleware_list)
    assert built_with(app) is mine
    assert govern(app, outbound()) is mine
    assert mine.outbound is own
    assert len(app._middleware_list) == before
