"""The async answer path's parts that need no Slack: the per-request client's settings, the middleware's binding,
an event's place in its lane, and which tasks count as an event's work. Against the sandbox:
tests/integration/test_async_answer_path.py."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse
from slack_sdk.web.async_client import AsyncWebClient

from nonstop.bolt.lanes import Tracker
from nonstop.bolt.tasks import Place, TaskCounting, counting, step_aside
from nonstop.config.settings import OutboundSettings
from nonstop.errors import ConfigError
from nonstop.outbound import Answering
from nonstop.outbound.aio import AsyncOutbound
from nonstop.outbound.aio_client import AsyncAnswerThroughGovernor, AsyncGovernedWebClient, govern
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.status import Telemetry
from tests.nonstop.outbound.test_client import KEPT, assert_bound, users_options


def outbound() -> AsyncOutbound:
    return AsyncOutbound(OutboundSettings(reply_deadline_s=30), metrics=OutboundMetrics())


def users_client() -> AsyncWebClient:
    return AsyncWebClient(**users_options(), retry_handlers=[AsyncRateLimitErrorRetryHandler()])


def test_a_requests_governed_client_keeps_the_users_options_and_drops_slack_sdks_retry_handlers() -> None:
    mine = users_client()
    copy = AsyncGovernedWebClient.for_request(
        mine, outbound=outbound(), answering=Answering(event_id=None, event_ts=None)
    )
    kept = (*KEPT, "session", "trust_env_in_session")
    assert {k: getattr(copy, k) for k in kept} == {k: getattr(mine, k) for k in kept}
    assert copy.headers["X-Mine"] == "1"
    assert copy.retry_handlers == [], "the governor decides every retry"
    assert mine.retry_handlers
    assert isinstance(mine.retry_handlers[0], AsyncRateLimitErrorRetryHandler)


def mention_request() -> AsyncBoltRequest:
    body = {
        "type": "event_callback",
        "event_id": "Ev0UNIT1",
        "event": {"type": "app_mention", "ts": "1700000000.1"},
    }
    return AsyncBoltRequest(body=body, mode="socket_mode")


def test_the_middleware_binds_each_requests_client_and_say_to_its_event() -> None:
    out = outbound()
    middleware = AsyncAnswerThroughGovernor(out)
    req = mention_request()
    plain = users_client()
    req.context["client"] = plain
    req.context["say"] = AsyncSay(client=plain, channel="C0GENERAL")
    tracker = Tracker(lambda: None)

    async def run() -> BoltResponse | None:
        async def next_() -> BoltResponse:
            return BoltResponse(status=200)

        with counting(tracker):
            return await middleware.async_process(req=req, resp=BoltResponse(status=200), next=next_)

    assert asyncio.run(run()).status == 200  # type: ignore[union-attr]
    assert_bound(req.context, AsyncGovernedWebClient, out, tracker)


def test_govern_adds_the_middleware_once_per_app_and_points_it_at_the_latest_way_out() -> None:
    app = AsyncApp(client=AsyncWebClient(token="xoxb-0"), request_verification_enabled=False)
    first, second = outbound(), outbound()
    before = len(app._async_middleware_list)
    middleware = govern(app, first)
    assert govern(app, second) is middleware
    assert middleware.outbound is second
    assert len(app._async_middleware_list) == before + 1


def test_stepping_aside_gives_the_place_in_the_lane_to_the_next_once() -> None:
    async def run() -> tuple[bool, int]:
        lane = asyncio.Semaphore(1)
        await lane.acquire()
        place = Place(lane)
        with counting(Tracker(lambda: None), place):
            step_aside()
            step_aside()
        place.give_back()  # when the event's work ends: already given
        await asyncio.wait_for(lane.acquire(), 1)  # the next event's turn
        return place.held, lane._value

    assert asyncio.run(run()) == (False, 0)


class HeldSender:
    """An async sender whose first try waits until released: its conversation owes an answer meanwhile."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.base_url = "http://127.0.0.1:9/api/"

    async def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse:
        await self.release.wait()
        data = {"ok": True, "ts": "1.1"}
        return SlackResponse(
            client=None, http_verb="POST", api_url=api_method, req_args={}, data=data, headers={}, status_code=200
        )


def test_a_call_that_must_wait_in_the_governor_tells_its_request_and_one_that_goes_does_not() -> None:
    waited: list[str] = []

    def answering(n: int) -> Answering:
        return Answering(event_id=f"Ev{n}", event_ts=f"1700000000.00000{n}", on_wait=lambda: waited.append(f"Ev{n}"))

    async def run() -> None:
        out, sender = outbound(), HeldSender()
        body = {"json": {"channel": "C0GENERAL", "text": "hi"}}
        first = asyncio.create_task(out.call(sender, "chat.postMessage", dict(body), answering(1)))
        await asyncio.sleep(0)
        second = asyncio.create_task(out.call(sender, "chat.postMessage", dict(body), answering(2)))
        while out.core.waiting < 1:
            await asyncio.sleep(0.001)
        assert waited == ["Ev2"]
        sender.release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)

    asyncio.run(run())
    assert waited == ["Ev2"]


def test_a_task_made_in_a_context_of_its_own_is_no_part_of_the_event_that_made_it() -> None:
    async def run() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        counting_tasks = TaskCounting(loop)
        counting_tasks.install()
        over = asyncio.Event()
        tracker = Tracker(over.set)
        gate = asyncio.Event()
        with counting(tracker):
            ours = loop.create_task(gate.wait())
            apart = loop.create_task(gate.wait(), context=contextvars.Context())
        tracker.release()  # the dispatch is over; `ours` still runs
        await asyncio.sleep(0)
        done_while_both_run = over.is_set()
        ours.cancel()
        await asyncio.gather(ours, return_exceptions=True)
        await asyncio.wait_for(over.wait(), 1)  # its done callback released the event: nothing else held it
        done_after_ours = over.is_set()
        apart.cancel()
        counting_tasks.uninstall()
        return done_while_both_run, done_after_ours

    assert asyncio.run(run()) == (False, True), "only the task in the event's context counted"


def test_the_async_handler_governs_with_the_environments_answer_settings_or_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nonstop import AsyncSupervisedSocketModeHandler
    from nonstop.config.settings import SupervisorSettings

    monkeypatch.setenv("NONSTOP_REPLY_DEADLINE", "0.5")
    monkeypatch.setenv("NONSTOP_UNSURE_ANSWER", "skip")
    app = AsyncApp(client=AsyncWebClient(token="xoxb-0"), request_verification_enabled=False)
    handler = AsyncSupervisedSocketModeHandler(app, "xapp-1-A0-0-x", telemetry=Telemetry())
    assert (handler.outbound.core.settings.reply_deadline_s, handler.outbound.core.settings.unsure_answer) == (
        30.0,
        "skip",
    )
    assert govern(app, handler.outbound).outbound is handler.outbound, "installed by the handler"
    explicit = AsyncSupervisedSocketModeHandler(app, "xapp-1-A0-0-x", settings=SupervisorSettings())
    assert explicit.outbound.core.settings == OutboundSettings(), "settings= given: the environment is not read"
    monkeypatch.setenv("NONSTOP_UNSURE_ANSWER", "twice")
    with pytest.raises(ConfigError, match="NONSTOP_UNSURE_ANSWER"):
        AsyncSupervisedSocketModeHandler(app, "xapp-1-A0-0-x")


def test_a_deep_copy_of_a_governed_client_answers_the_same_request_through_the_same_governor() -> None:
    """What Bolt does to a request for a lazy listener (slack_bolt.util.utils.create_copy), on both clients."""
    import copy

    from nonstop.outbound import GovernedWebClient, Outbound

    answering = Answering(event_id="Ev0COPY", event_ts="1700000000.000100")
    aio = AsyncGovernedWebClient.for_request(users_client(), outbound=outbound(), answering=answering)
    sync = GovernedWebClient(token="xoxb-0", outbound=Outbound(OutboundSettings()), answering=answering)
    for client in (aio, sync):
        copied = copy.deepcopy({"client": client, "say": AsyncSay(client=client, channel="C0GENERAL")})  # type: ignore[arg-type]
        assert copied["client"] is not client
        assert copied["say"].client is copied["client"]
        assert (copied["client"].outbound, copied["client"].answering) == (client.outbound, client.answering)
        assert copied["client"].token == client.token


class GatedSender:
    """An async sender whose try of each text waits until that text's gate opens."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.base_url = "http://127.0.0.1:9/api/"

    async def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse:
        await self.gates.setdefault(kwargs["json"]["text"], asyncio.Event()).wait()
        data = {"ok": True, "ts": "1.1"}
        return SlackResponse(
            client=None, http_verb="POST", api_url=api_method, req_args={}, data=data, headers={}, status_code=200
        )


def test_an_event_whose_call_started_the_governors_scheduler_is_done_while_the_scheduler_runs_on() -> None:
    """The scheduler task is the governor's, not the event's that happened to need it first (a user's task
    factory that takes no `context=` still makes it)."""

    async def run() -> bool:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro: asyncio.Task(coro, loop=loop))  # type: ignore[arg-type, misc]
        tasks = TaskCounting(loop)
        tasks.install()
        out, sender = outbound(), GatedSender()

        def post(n: int) -> Any:
            body = {"json": {"channel": "C0GENERAL", "text": f"answer {n}"}}
            return out.call(sender, "chat.postMessage", body, Answering(event_id=f"Ev{n}", event_ts=f"17.00000{n}"))

        first = asyncio.create_task(post(1))  # in flight, its conversation busy
        await asyncio.sleep(0)
        over = asyncio.Event()
        tracker = Tracker(over.set)
        with counting(tracker):
            second = asyncio.create_task(post(2))  # waits: its call starts the scheduler
        tracker.release()
        await asyncio.sleep(0)
        third = asyncio.create_task(post(3))  # waits behind it, keeping the scheduler busy
        while out.core.waiting < 2:
            await asyncio.sleep(0.001)
        sender.gates.setdefault("answer 1", asyncio.Event()).set()
        sender.gates.setdefault("answer 2", asyncio.Event()).set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await asyncio.wait_for(over.wait(), 1)  # done: the scheduler, still running for the third, is not its work
        done_while_third_waits = not third.done()
        sender.gates.setdefault("answer 3", asyncio.Event()).set()
        await asyncio.wait_for(third, 5)
        tasks.uninstall()
        return done_while_third_waits

    assert asyncio.run(run())
