"""What a listener can read in Bolt's `context` (docs/dropin.md): `nonstop_recovered` and `nonstop_late_s`, seen
by a real `App` on the runner's threads and by a real `AsyncApp` on its own loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.app.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from nonstop.bolt.aio_runner import AsyncBoltRunner
from nonstop.bolt.context import late_s
from nonstop.bolt.runner import BoltRunner
from nonstop.bolt.tasks import TaskCounting
from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.nonstop.pipeline.harness import mention_envelope

Seen = list[tuple[Any, Any]]


def requests(now: float) -> list[SocketModeRequest]:
    """A mention two minutes old as catch-up found it, a fresh one delivered, and an event that says no time."""
    old = mention_envelope("catchup-1", "Ev0OLD", ts=f"{now - 120:.6f}")
    fresh = mention_envelope("env-2", "Ev0FRESH", ts=f"{now:.6f}")
    timeless = mention_envelope("env-3", "Ev0TIMELESS")
    for name in ("ts", "event_ts"):
        del timeless["payload"]["event"][name]
    return [SocketModeRequest.from_dict(e) for e in (old, fresh, timeless)]


def check(seen: dict[str, tuple[Any, Any]]) -> None:
    assert seen["Ev0OLD"][0] is True
    assert 120 <= seen["Ev0OLD"][1] < 130
    assert seen["Ev0FRESH"][0] is False
    assert 0 <= seen["Ev0FRESH"][1] < 10
    assert seen["Ev0TIMELESS"] == (False, None)


def test_an_app_listener_reads_whether_its_event_was_recovered_and_how_late_it_is(sandbox: Sandbox) -> None:
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
    seen: dict[str, tuple[Any, Any]] = {}

    @app.event("app_mention")
    def mention(body: dict[str, Any], context: dict[str, Any]) -> None:
        seen[body["event_id"]] = (context.get("nonstop_recovered"), context.get("nonstop_late_s"))

    runner = BoltRunner(app, event_threads=2, command_threads=1, telemetry=Telemetry())
    done = threading.Semaphore(0)
    for n, request in enumerate(requests(time.time())):
        assert runner.run_event(request, done.release, recovered=n == 0)
    for _ in range(3):
        assert done.acquire(timeout=10)
    runner.close()
    check(seen)


@pytest.fixture
def app_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    loop.call_soon_threadsafe(TaskCounting(loop).install)  # as the handler does: the runner needs it
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_an_async_app_listener_reads_them_too(sandbox: Sandbox, app_loop: asyncio.AbstractEventLoop) -> None:
    async def make() -> AsyncApp:
        return AsyncApp(client=AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    app = asyncio.run_coroutine_threadsafe(make(), app_loop).result(10)
    seen: dict[str, tuple[Any, Any]] = {}

    @app.event("app_mention")
    async def mention(body: dict[str, Any], context: dict[str, Any]) -> None:
        seen[body["event_id"]] = (context.get("nonstop_recovered"), context.get("nonstop_late_s"))

    runner = AsyncBoltRunner(app, app_loop, event_concurrency=2, command_concurrency=1, telemetry=Telemetry())
    done = threading.Semaphore(0)
    for n, request in enumerate(requests(time.time())):
        assert runner.run_event(request, done.release, recovered=n == 0)
    for _ in range(3):
        assert done.acquire(timeout=10)
    runner.close()
    check(seen)


@pytest.mark.parametrize(
    ("payload", "late"),
    [
        ({"event": {"event_ts": "990.5", "ts": "900.0"}, "event_time": 800}, 9.5),
        ({"event": {"ts": "995.25"}, "event_time": 800}, 4.75),
        ({"event": {"ts": "soon"}, "event_time": 940}, 60.0),
        ({"event": {}, "event_time": 1010}, 0.0),  # a clock behind Slack's: never below zero
        ({"event": "no object", "event_time": True}, None),
        ({}, None),
    ],
)
def test_lateness_counts_from_the_event_ts_then_the_message_ts_then_event_time(
    payload: dict[str, Any], late: float | None
) -> None:
    assert late_s(payload, 1000.0) == late
